"""Dates and numbers as values: "1954-07-03" is "3 July 1954", "1,500,000" is "1.5 million".

Models rewrite values: ISO dates for written ones, digits for scale words. An answer that is a
date or a number (the whole name, `parse_value`) gets a canonical value, and `value_forms`
lists every written form of that value that this module knows, normalised like document text
(`normalize`), so a value is looked up exactly like a name: `str.find` on token boundaries in
its own document, the same Aho-Corasick scan in the others (a reworded leak is still a leak).

Hand rules for a bounded set of English forms, not `dateparser` or `dateutil`: both parse one
string they are given, neither finds dates in running text with their spans, and both settle
what the string leaves open by a setting (`dayfirst`, `PREFER_DAY_OF_MONTH`, today's date for a
missing day), which is guesswork here. Generating the forms of one known value instead keeps
the search exact and linear, and a form that is ambiguous is never generated.

Dates (day, month and year all present; English month names and their 3-letter abbreviations,
with or without a dot, "Sept"):
  "3 July 1954", "3rd July 1954", "03 July 1954", "3 of July 1954", "July 3, 1954", "July 3rd 1954",
  "1954-07-03", "1954/07/03", and "14/02/1921", "02/14/1921", "14.02.1921" only where the day is
  above 12 or equals the month, so the order cannot be mistaken. "03/07/1954" is never read.
Numbers: digits with or without thousands commas, decimals, a scale word (thousand, million,
  billion, trillion, "bn"), a currency sign or code before ($, US$, USD, €, EUR, £, GBP, ¥), a
  percent sign or "percent"/"per cent" after. A value with a unit grounds only where the
  document has the same unit; one without a unit grounds on the number with or without one.
Not normalised, on purpose: a month and year without a day, a year alone ("1954" is matched as
written), decades ("the 1980s"), ranges, relative dates ("last Tuesday"), two-digit years,
times, non-English month names, numbers in words ("twelve"), "m"/"k" suffixes and currency
names after the number ("5 dollars"): each is either ambiguous or matched only as written.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache

MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_MONTH_NUMBER = {name: i + 1 for i, name in enumerate(MONTHS)}
_MONTH_NUMBER.update({name[:3]: i + 1 for i, name in enumerate(MONTHS)})
_MONTH_NUMBER["sept"] = 9
_MONTH = "(" + "|".join(sorted(_MONTH_NUMBER, key=len, reverse=True)) + r")\.?"
_ORDINAL = r"(?:st|nd|rd|th)?"
_WEEKDAY = r"(?:(?:mon|tues|wednes|thurs|fri|satur|sun)day\s*,?\s*)?"
_DAY_MONTH_YEAR = re.compile(rf"{_WEEKDAY}(?:the\s+)?(\d{{1,2}}){_ORDINAL}\s*(?:of\s+)?{_MONTH}\s*,?\s*(\d{{4}})")
_MONTH_DAY_YEAR = re.compile(rf"{_WEEKDAY}{_MONTH}\s+(\d{{1,2}}){_ORDINAL}\s*,?\s*(\d{{4}})")
_ISO = re.compile(r"(\d{4})([-/])(\d{1,2})\2(\d{1,2})")
_NUMERIC = re.compile(r"(\d{1,2})([/.\-])(\d{1,2})\2(\d{4})")

CURRENCIES = {"$": "$", "us$": "$", "usd": "$", "€": "€", "eur": "€", "£": "£", "gbp": "£", "¥": "¥"}
# Written forms of each unit, as `normalize` leaves them: before the number for currencies, after it for %.
# Longest first: the span found covers "US$ 5", not only "$ 5" inside it.
_UNIT_PREFIXES = {
    "$": ("us$ ", "us$", "usd ", "$ ", "$"),
    "€": ("eur ", "€ ", "€"),
    "£": ("gbp ", "£ ", "£"),
    "¥": ("¥ ", "¥"),
}
_PERCENT_SUFFIXES = ("%", " %", " percent", " per cent")
SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12, "bn": 10**9}
_NUMBER = re.compile(
    r"(?P<cur>us\$|\$|€|£|¥|usd|eur|gbp)?\s*"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)\s*"
    r"(?P<scale>thousand|million|billion|trillion|bn)?\s*"
    r"(?P<pct>%|percent|per cent)?"
)
# A value that is a leak by itself, when only another document holds it: a full date, or a number of at least
# this many significant digits that is not a bare year-like integer ("12,500" and "1,837" are; "1.5 million",
# "12", "1954" are not).
MIN_SIGNIFICANT_DIGITS = 3


@dataclass(frozen=True, slots=True)
class Value:
    """A date ("1954-07-03") or a number ("1500000", with its unit: "", "%", "$", "€", "£", "¥")."""

    kind: str  # "date" | "number"
    canonical: str
    unit: str = ""
    written_with_separator: bool = False  # "12,500" rather than "12500"

    @property
    def specific(self) -> bool:
        """Whether another document holding this value is, by itself, a sign of a leak (module constants)."""
        if self.kind == "date":
            return True
        digits = self.canonical.replace(".", "").lstrip("0").rstrip("0")
        if len(digits) < MIN_SIGNIFICANT_DIGITS:
            return False
        return not (self.unit == "" and _year_like(self.canonical) and not self.written_with_separator)


@lru_cache(maxsize=1 << 14)
def parse_value(name: str) -> Value | None:
    """The value a whole name writes, or None (not a date or number, or an ambiguous one)."""
    if len(name) > 60:
        return None  # no written date or number is this long: a hostile or rambling name costs nothing here
    text = " ".join(name.casefold().replace("\u00a0", " ").split()).strip(" ,;:()[]\"'")
    if not text or not any(c.isdigit() for c in text):
        return None
    for pattern, order in ((_DAY_MONTH_YEAR, "dmy"), (_MONTH_DAY_YEAR, "mdy")):
        match = pattern.fullmatch(text.rstrip("."))
        if match:
            a, b, year = match.groups()
            day, month = (a, b) if order == "dmy" else (b, a)
            return _date(int(year), _MONTH_NUMBER[month], int(day))
    match = _ISO.fullmatch(text)
    if match:
        return _date(int(match.group(1)), int(match.group(3)), int(match.group(4)))
    match = _NUMERIC.fullmatch(text)
    if match:
        first, second, year = int(match.group(1)), int(match.group(3)), int(match.group(4))
        if first > 12 >= second or first == second:
            return _date(year, second, first)
        if second > 12 >= first:
            return _date(year, first, second)
        return None  # 03/07/1954: 3 July or March 7, never guessed
    match = _NUMBER.fullmatch(text.rstrip(".") if not text.endswith("%") else text)
    if match is None or not (match.group("num")[:1].isdigit() or match.group("num")[:1] == "."):
        return None
    digits = match.group("num")
    try:
        amount = Decimal(digits.replace(",", ""))
    except InvalidOperation:
        return None
    if match.group("scale"):
        amount *= SCALES[match.group("scale")]
    unit = "%" if match.group("pct") else CURRENCIES.get(match.group("cur") or "", "")
    if match.group("pct") and match.group("cur"):
        return None
    return Value("number", _plain(amount), unit, written_with_separator="," in digits)


@lru_cache(maxsize=1 << 12)
def value_forms(value: Value) -> tuple[str, ...]:
    """Every written form of `value` this module knows, normalised (lower case, single spaces), most common first."""
    if value.kind == "date":
        return _date_forms(value.canonical)
    amount = Decimal(value.canonical)
    bare = _number_forms(amount, value)
    if value.unit == "%":
        return tuple(dict.fromkeys(b + s for b in bare for s in _PERCENT_SUFFIXES))
    if value.unit:
        return tuple(dict.fromkeys(p + b for p in _UNIT_PREFIXES[value.unit] for b in bare))
    return bare


def _date(year: int, month: int, day: int) -> Value | None:
    try:
        return Value("date", datetime.date(year, month, day).isoformat())
    except ValueError:
        return None  # 31 February: not a date


def _date_forms(iso: str) -> tuple[str, ...]:
    year, month, day = (int(part) for part in iso.split("-"))
    y = f"{year:04d}"
    days = [str(day), f"{day}{_ordinal(day)}"] + ([f"{day:02d}"] if day < 10 else [])
    name = MONTHS[month - 1]
    months = [name] if len(name) == 3 else [name, name[:3], name[:3] + "."]
    if month == 9:
        months += ["sept", "sept."]
    forms: list[str] = [f"{y}-{month:02d}-{day:02d}"]
    for d in days:
        for m in months:
            forms += [
                f"{d} {m} {y}",
                f"{m} {d}, {y}",
                f"{m} {d} {y}",
                f"{m} {d} , {y}",
                f"{d} {m}, {y}",
                f"{d} {m} , {y}",
                f"{d} of {m} {y}",
                f"{d} of {m}, {y}",
            ]
    forms += [f"{y}/{month:02d}/{day:02d}", f"{y}-{month}-{day}"]
    if day > 12 or day == month:  # the order of day and month cannot be mistaken
        for sep in "/.-":
            forms += [f"{day}{sep}{month}{sep}{y}", f"{day:02d}{sep}{month:02d}{sep}{y}"]
            if day != month:
                forms += [f"{month}{sep}{day}{sep}{y}", f"{month:02d}{sep}{day:02d}{sep}{y}"]
    return tuple(dict.fromkeys(forms))


def _number_forms(amount: Decimal, value: Value) -> tuple[str, ...]:
    forms: list[str] = []
    plain = _plain(amount)
    integral = amount == amount.to_integral_value()
    if abs(amount) >= 1000 and not (
        integral and not value.unit and _year_like(plain) and not value.written_with_separator
    ):
        forms.append(_with_commas(amount))
    if not (integral and not value.unit and _year_like(plain) and value.written_with_separator):
        forms.append(plain)  # "1,837" is a count: never the year 1837
    if not integral or abs(amount) < 10**4 or value.kind != "number":
        return tuple(dict.fromkeys(forms))
    for word, scale in SCALES.items():
        scaled = amount / scale
        if 1 <= abs(scaled) < 1000 and scaled == scaled.quantize(Decimal("0.001")):
            text = _plain(scaled)
            forms.append(f"{text} {word}")
            if word == "bn":
                forms.append(f"{text}bn")
    return tuple(dict.fromkeys(forms))


def _plain(amount: Decimal) -> str:
    text = format(amount.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _with_commas(amount: Decimal) -> str:
    plain = _plain(amount)
    whole, _, fraction = plain.partition(".")
    sign = "-" if whole.startswith("-") else ""
    grouped = f"{int(whole.lstrip('-')):,}"
    return sign + grouped + ("." + fraction if fraction else "")


def _year_like(canonical: str) -> bool:
    return canonical.isdigit() and len(canonical) == 4 and 1000 <= int(canonical) <= 2999


def _ordinal(day: int) -> str:
    if 10 <= day % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
