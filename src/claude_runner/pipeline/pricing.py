"""Token prices, to estimate what an attempt that was killed before its result cost.

The CLI reports the cost of every run that ends with a result (``total_cost_usd``); only
an attempt stopped by a timeout, a cancellation or a crash has to be estimated, from the
``usage`` of the assistant messages in its stream. Prices in US dollars per million
tokens, matched by family in the model id; an unknown model is priced like the dearest
family, so an estimate errs towards stopping early (a budget fails closed).

``PIPELINE_PRICE_TABLE`` names a JSON file that replaces the table:
``{"sonnet": {"input": 3, "output": 15, "cache_write": 3.75, "cache_read": 0.3}, ...}``
(keys matched as substrings of the model id, in file order).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from claude_runner.errors import UsageError


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cache_write: float
    cache_read: float

    def cost(self, usage: Mapping[str, int]) -> float:
        return (
            usage.get("input_tokens", 0) * self.input
            + usage.get("output_tokens", 0) * self.output
            + usage.get("cache_creation_input_tokens", 0) * self.cache_write
            + usage.get("cache_read_input_tokens", 0) * self.cache_read
        ) / 1_000_000


# List prices at the time of writing; cache writes 1.25x, cache reads 0.1x the input price.
DEFAULT_TABLE: dict[str, Price] = {
    "opus": Price(15.0, 75.0, 18.75, 1.5),
    "sonnet": Price(3.0, 15.0, 3.75, 0.3),
    "haiku": Price(1.0, 5.0, 1.25, 0.1),
}


@dataclass(frozen=True)
class PriceTable:
    prices: Mapping[str, Price]

    def of(self, model: str | None) -> Price:
        for family, price in self.prices.items():
            if model and family in model:
                return price
        return max(self.prices.values(), key=lambda p: p.output)

    @classmethod
    def load(cls, path: str | None) -> PriceTable:
        """The default table, or the one in the JSON file ``path``."""
        if not path:
            return cls(DEFAULT_TABLE)
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
            prices = {
                str(family): Price(
                    float(p["input"]),
                    float(p["output"]),
                    float(p.get("cache_write", p["input"] * 1.25)),
                    float(p.get("cache_read", p["input"] * 0.1)),
                )
                for family, p in raw.items()
            }
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise UsageError(
                f"PIPELINE_PRICE_TABLE={path!r} is not a usable price table ({exc}); "
                'write {"sonnet": {"input": 3, "output": 15}, ...} in US dollars per '
                "million tokens"
            ) from None
        if not prices:
            raise UsageError(f"PIPELINE_PRICE_TABLE={path!r} holds no prices")
        return cls(prices)
