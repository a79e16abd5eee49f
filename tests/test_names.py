"""Unit tests for hub username -> Rucio account names (spawner_hooks.names)."""

from __future__ import annotations

import random
import re
import string

import pytest

from spawner_hooks.names import is_derived, rucio_account

# What Rucio accepts as an account name.
RUCIO_ACCOUNT = re.compile(r"^[a-z0-9_-]{1,25}$")

VALID_AS_IS = ["alice", "bob42", "s1234567", "a", "x_y", "first-last", "a" * 25, "0", "_", "a-"]

NEEDS_DERIVING = [
    "Jürgen",
    "学生",
    "🎉🎉",
    "student🙂",
    "x" * 200,
    "alice@example.org",
    "first.last",
    "Alice",
    "ALICE",
    "a--b",
    "--",
    "a b",
    "tab\there",
    "a" * 26,
    "é",
    "ﬁle",  # a ligature that NFKD folds to two letters
    "\u200b",  # zero-width space: nothing readable left
    "a/b",
    "../etc",
]


def _assert_rucio_ok(account: str) -> None:
    assert RUCIO_ACCOUNT.match(account), f"{account!r} is not a valid Rucio account"


# --------------------------------------------------------------------------- kept names


@pytest.mark.parametrize("username", VALID_AS_IS)
def test_valid_usernames_are_kept(username):
    account = rucio_account(username)
    assert account == username
    assert not is_derived(account)


@pytest.mark.parametrize("username", NEEDS_DERIVING)
def test_other_usernames_are_derived_and_valid(username):
    account = rucio_account(username)
    _assert_rucio_ok(account)
    assert account != username
    assert is_derived(account)


def test_derived_names_keep_a_readable_hint():
    assert rucio_account("Jürgen").startswith("jurgen--")
    assert rucio_account("alice@example.org").startswith("alice-example")
    assert rucio_account("First.Last").startswith("first-last--")
    # nothing readable: a placeholder instead of an empty part
    assert re.match(r"^[a-z0-9]+--", rucio_account("学生"))


def test_derived_names_end_with_a_hash_of_the_exact_username():
    a, b = rucio_account("Alice"), rucio_account("ALICE")
    assert a.split("--")[0] == b.split("--")[0] == "alice"
    assert a.split("--")[1] != b.split("--")[1]


def test_long_names_are_cut_to_the_rucio_limit():
    for n in (26, 30, 64, 200, 1000):
        account = rucio_account("x" * n)
        _assert_rucio_ok(account)
        assert len(account) <= 25


def test_names_differing_only_after_the_limit_stay_apart():
    base = "a_very_long_student_username_"
    assert len(base) > 25
    names = [base + suffix for suffix in ("1", "2", "x", "y", "", "zz")]
    accounts = [rucio_account(n) for n in names]
    assert len(set(accounts)) == len(names)
    # and they share the readable start, so an admin still recognises them
    assert len({a.split("--")[0] for a in accounts}) == 1


def test_empty_username_is_refused():
    with pytest.raises(ValueError):
        rucio_account("")
    with pytest.raises(ValueError):
        rucio_account("", "jh-")


# --------------------------------------------------------------------------- stability


def test_results_are_stable():
    names = VALID_AS_IS + NEEDS_DERIVING
    first = [rucio_account(n) for n in names]
    second = [rucio_account(n) for n in list(names)]
    assert first == second
    assert rucio_account("Jürgen", "jh-") == rucio_account("Jürgen", "jh-")


def test_the_same_name_in_another_unicode_form_is_another_user():
    # NFC and NFD spell "Jürgen" differently; the hub treats them as distinct usernames,
    # so they must not share an account even though they read the same.
    nfc, nfd = "J\u00fcrgen", "Ju\u0308rgen"
    assert nfc != nfd
    assert rucio_account(nfc) != rucio_account(nfd)


# --------------------------------------------------------------------------- injectivity


def _tricky_usernames() -> set[str]:
    rng = random.Random(20240601)
    names: set[str] = set()
    # case variants and separators
    for stem in ("alice", "bob", "x", "student01", "ab"):
        names.update({stem, stem.capitalize(), stem.upper(), stem.swapcase()})
    for sep in (".", "-", "_", " ", "@", "+", "--", "__", "-_", "_-", "..", "\t"):
        names.add(f"a{sep}b")
        names.add(f"{sep}ab")
        names.add(f"ab{sep}")
    # names that are (or look like) derived accounts
    for user in ("Alice", "a.b", "Jürgen"):
        names.add(rucio_account(user))
        names.add(rucio_account(user).replace("--", "-"))
    # long names differing only late
    long_base = "z" * 24
    for tail in list(string.ascii_lowercase) + ["", "-", "_", "0", "Z", "é"]:
        names.add(long_base + tail)
        names.add(long_base + "q" + tail)
    # near-duplicates around the kept/derived border
    for n in (24, 25, 26):
        names.add("m" * n)
        names.add("m" * (n - 1) + "-")
        names.add("M" * n)
    # random unicode (no lone surrogates: they cannot be a hub username)
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x4E00, 0x9FFF), (0x1F300, 0x1FAFF)]
    while len(names) < 12_000:
        lo, hi = rng.choice(ranges)
        length = rng.randint(1, 40)
        names.add("".join(chr(rng.randint(lo, hi)) for _ in range(length)))
    # random ASCII from the Rucio alphabet plus a few troublemakers
    alphabet = string.ascii_letters + string.digits + "-_.@ "
    for _ in range(3000):
        names.add("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))))
    names.discard("")
    return names


@pytest.fixture(scope="module")
def tricky() -> set[str]:
    return _tricky_usernames()


@pytest.mark.parametrize("prefix", ["", "jh-", "lh_", "abcdefgh"])
def test_no_two_usernames_share_an_account(tricky, prefix):
    seen: dict[str, str] = {}
    for username in tricky:
        account = rucio_account(username, prefix)
        _assert_rucio_ok(account)
        other = seen.setdefault(account, username)
        assert other == username, f"{other!r} and {username!r} both map to {account!r}"
    assert len(seen) == len(tricky)


def test_kept_and_derived_forms_never_coincide(tricky):
    kept = set()
    derived = set()
    for username in tricky:
        account = rucio_account(username)
        (derived if is_derived(account) else kept).add(account)
        # a kept account is exactly the username; a derived one never is
        assert (account == username) != is_derived(account)
    assert kept
    assert derived
    assert kept.isdisjoint(derived)


# --------------------------------------------------------------------------- prefix


@pytest.mark.parametrize("prefix", ["jh-", "lh_", "x", "abcdefgh"])
@pytest.mark.parametrize("username", ["alice", "a" * 25, "Jürgen", "x" * 200, "a@b.c", "-"])
def test_prefix_is_applied_and_the_limit_holds(prefix, username):
    account = rucio_account(username, prefix)
    assert account.startswith(prefix)
    _assert_rucio_ok(account)
    assert len(account) <= 25


def test_prefix_on_a_kept_name_is_just_prepended():
    assert rucio_account("alice", "jh-") == "jh-alice"
    assert not is_derived(rucio_account("alice", "jh-"))


def test_a_name_that_no_longer_fits_after_the_prefix_is_derived():
    name = "a" * 25
    assert rucio_account(name) == name
    account = rucio_account(name, "jh-")
    assert is_derived(account)
    assert len(account) <= 25


def test_prefix_and_name_must_not_form_the_separator():
    # "jh-" + "-bob" would read like a derived name; it must be derived instead
    account = rucio_account("-bob", "jh-")
    assert is_derived(account)
    _assert_rucio_ok(account)
    assert account != rucio_account("bob", "jh-")


@pytest.mark.parametrize("prefix", ["JH-", "jh.", "toolongprefix", "jh--", "é", "a b", "--"])
def test_invalid_prefix_raises(prefix):
    with pytest.raises(ValueError):
        rucio_account("alice", prefix)


def test_is_derived_on_plain_names():
    assert not is_derived("alice")
    assert not is_derived("a-b_c")
    assert is_derived("a--abcdefghij")
