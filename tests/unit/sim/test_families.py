"""Generated trace families: reproducible by (family, seed), and shaped as ember_sim.families documents."""

from __future__ import annotations

import itertools

import pytest
from ember_sim.families import FAMILIES, LONG_PROMPT, member


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_member_is_reproducible_and_seeds_differ(family: str) -> None:
    a, b, c = member(family, 1, 600.0), member(family, 1, 600.0), member(family, 2, 600.0)
    assert a == b and a != c
    assert all(0 <= r.arrival_s < 600.0 for r in a)
    assert [r.arrival_s for r in a] == sorted(r.arrival_s for r in a)


def test_long_prompt_members_carry_six_to_fifteen_percent_long_prompts() -> None:
    reqs = member("long-prompts", 3, 1200.0)
    share = sum(r.prompt_tokens >= LONG_PROMPT[0] for r in reqs) / len(reqs)
    assert 0.05 <= share <= 0.17


def test_steps_members_have_a_silent_gap() -> None:
    arrivals = [r.arrival_s for r in member("steps", 4)]
    assert max(b - a for a, b in itertools.pairwise(arrivals)) >= 600.0


def test_unknown_family_is_named() -> None:
    with pytest.raises(KeyError, match="known: bursty"):
        member("nope", 1)
