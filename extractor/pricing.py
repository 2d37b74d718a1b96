"""What a model costs per million tokens, and what a job will cost before it is sent."""

from __future__ import annotations

import re
from dataclasses import dataclass

from extractor.lanes import describe


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None


BATCH_DISCOUNT = 0.5  # the Batch API bills input and output at half the standard rate
LOCAL = Price(0.0, 0.0, 0.0)

# USD per million tokens, standard (non-batch) tier, from OpenAI's pricing page as quoted in
# public price tables in 2026. Re-check before relying on a figure for billing. Reasoning tokens are
# billed as output. Models already shut down (extractor/prepare/models.py) keep their price, for old jobs' reports.
PRICES: dict[str, Price] = {
    # GPT-5.6 (June 26, 2026 preview: Sol $5/$30, Terra $2.50/$15, Luna $1/$6, cached input 90 % off);
    # Terra cut 20 % and Luna 80 % on 2026-07-30 (price-cut notice relayed by resellers, e.g. docs.laozhang.ai
    # "GPT-5.6 Luna and Terra API Price Cut"). Sol unchanged.
    "gpt-5.6-sol": Price(5.00, 30.00, 0.50),
    "gpt-5.6-terra": Price(2.00, 12.00, 0.20),
    "gpt-5.6-luna": Price(0.20, 1.20, 0.02),
    # GPT-5.5: $5/$30 (OpenAI pricing page as quoted June 2026); pro $30/$180, no cached rate published.
    "gpt-5.5": Price(5.00, 30.00, 0.50),
    "gpt-5.5-pro": Price(30.00, 180.00, None),
    # gpt-5.4-pro: as third-party price tables quote it (not confirmed on OpenAI's page here); gpt-5-pro: launch price.
    "gpt-5.4-pro": Price(30.00, 180.00, None),
    "gpt-5-pro": Price(15.00, 120.00, None),
    "gpt-5.4": Price(2.50, 15.00, 0.25),
    "gpt-5.4-mini": Price(0.75, 4.50, 0.075),
    # gpt-5.4-nano: input and output as published; cached input assumed at the family's 10 %.
    "gpt-5.4-nano": Price(0.20, 1.25, 0.02),
    "gpt-5.2": Price(1.75, 14.00, 0.175),
    "gpt-5.1": Price(1.25, 10.00, 0.125),
    "gpt-5": Price(1.25, 10.00, 0.125),
    "gpt-5-mini": Price(0.25, 2.00, 0.025),
    "gpt-5-nano": Price(0.05, 0.40, 0.005),
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "o1": Price(15.00, 60.00, 7.50),
    "o3": Price(2.00, 8.00, 0.50),
    "o3-mini": Price(1.10, 4.40, 0.55),
    "o4-mini": Price(1.10, 4.40, 0.275),
    "gpt-4-turbo": Price(10.00, 30.00, None),
    "gpt-4": Price(30.00, 60.00, None),
    "gpt-3.5-turbo": Price(0.50, 1.50, None),
}

# A dated snapshot of a listed model: "gpt-4o-2024-08-06", "gpt-4-0613".
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")
# Open-weight families served by the local lane (llama.cpp, vLLM, Ollama): nobody bills per token.
_LOCAL_FAMILIES = ("gemma", "llama", "qwen", "mistral", "mixtral", "phi", "deepseek", "smollm", "granite", "olmo")


def price_for(model: str, *, backend: str | None = None) -> Price | None:
    """The price of a model (dated snapshots priced as their base model); None when unknown."""
    if backend is not None and not describe(backend).billed:
        return LOCAL
    name = model.strip().lower()
    if name.startswith("openai/"):
        name = name[len("openai/") :]
    if name in PRICES:
        return PRICES[name]
    base = _SNAPSHOT.sub("", name)
    if base in PRICES:
        return PRICES[base]
    if _is_local(name):
        return LOCAL
    return None


def _is_local(name: str) -> bool:
    tail = name.rsplit("/", 1)[-1]
    return tail.endswith(".gguf") or name.startswith("local") or tail.startswith(_LOCAL_FAMILIES)


def usd(value: float | None, *, places: int = 4, unknown: str = "n/a (no price for this model)") -> str:
    """A cost for people to read, "$0.0123"; `unknown` where no price is known (None)."""
    return unknown if value is None else f"${value:.{places}f}"


def estimate_cost(
    model: str, input_tokens: int, output_tokens: int, *, batch: bool, backend: str | None = None
) -> float | None:
    """USD for the given token counts (no cache hits assumed); None when the model's price is unknown."""
    price = price_for(model, backend=backend)
    if price is None:
        return None
    cost = (input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok) / 1_000_000
    return cost * BATCH_DISCOUNT if batch else cost
