"""An event's vendor and product against the registry's vendors: why one is refused, with the
registered name it is close to, and for a product, its vendor's products."""
from __future__ import annotations

import difflib
import functools

#: Vendor name -> its product names (empty: any product); names exactly as the platform stores them.
Vendors = dict[str, frozenset[str]]


def _fold(name: str) -> str:
    return " ".join(name.split()).casefold()


@functools.lru_cache(maxsize=256)
def close_to(name: str, registered: frozenset[str]) -> str:
    """The registered name ``name`` is close to, as `` (did you mean "..."?)``, or ""."""
    # Case and spacing first, by folding both sides: difflib alone scores "vendor a" against
    # "Vendor A" at 0.75, below a cutoff strict enough not to suggest unrelated names. Then
    # typos, by difflib on the folded names. Only a refused event pays for this (about 0.4 ms
    # against 30 vendors), and a back end repeating one misspelt name pays once: the cache.
    folded = {_fold(n): n for n in sorted(registered)}
    key = _fold(name)
    close = [key] if key in folded else difflib.get_close_matches(key, folded, n=1, cutoff=0.8)
    return f' (did you mean "{folded[close[0]]}"?)' if close else ""


def _names(names: frozenset[str], most: int = 10) -> str:
    """``"a", "b" and "c"``; past ``most`` names, how many more."""
    quoted = [f'"{n}"' for n in sorted(names)]
    if len(quoted) > most:
        quoted = [*quoted[:most], f"{len(quoted) - most} more"]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def unregistered(vendors: Vendors, vendor: str, product: str) -> dict[str, list[str]] | None:
    """Which of an event's vendor and product ``vendors`` does not list (as the errors of a 400), or None."""
    products = vendors.get(vendor)
    if products is None:
        return {"vendor": ["is not registered" + close_to(vendor, frozenset(vendors))]} if vendors else None
    if products and product not in products:
        return {"product": [f'is not registered for vendor "{vendor}"{close_to(product, products)}: its products are '
                            + _names(products)]}
    return None
