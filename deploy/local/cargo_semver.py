"""Cargo's version and version-requirement rules (those of the `semver` crate, 1.x), stdlib only.

Used by deploy/local/audit-deps to decide whether a locked crate version is covered by an
advisory's `patched` or `unaffected` requirements. The parsing and matching follow the semver
crate's: a bare version means caret, comparators are separated by commas, a wildcard stands
alone or in place of the minor/patch number, and a pre-release version only satisfies a
requirement when some comparator names the same major.minor.patch with a pre-release of its own
(so `>= 1.0.0` does not match `1.1.0-alpha.1`). Build metadata never affects matching.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["SemverError", "Version", "Comparator", "VersionReq"]


class SemverError(ValueError):
    pass


_NUMBER = re.compile(r"[0-9]+")
_IDENT = re.compile(r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*")


def _number(text: str, pos: int, what: str, source: str) -> tuple[int, int]:
    m = _NUMBER.match(text, pos)
    if not m:
        raise SemverError(f"expected the {what} number at {pos} in {source!r}")
    digits = m.group()
    if len(digits) > 1 and digits[0] == "0":
        raise SemverError(f"leading zero in the {what} number of {source!r}")
    value = int(digits)
    if value >= 2**64:
        raise SemverError(f"the {what} number of {source!r} is too large")
    return value, m.end()


def _identifiers(text: str, pos: int, what: str, source: str) -> tuple[tuple[str, ...], int]:
    m = _IDENT.match(text, pos)
    if not m:
        raise SemverError(f"empty {what} in {source!r}")
    parts = tuple(m.group().split("."))
    if what == "pre-release":
        for part in parts:
            if part.isdigit() and len(part) > 1 and part[0] == "0":
                raise SemverError(f"leading zero in pre-release identifier {part!r} of {source!r}")
    return parts, m.end()


def _pre_key(pre: tuple[str, ...]) -> tuple:
    """Sort key for a pre-release: none sorts after any; numeric parts before alphanumeric ones."""
    if not pre:
        return (1,)
    return (0, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre))


@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: tuple[str, ...] = ()
    build: str = ""

    @classmethod
    def parse(cls, text: str) -> Version:
        if not text:
            raise SemverError("empty version")
        major, pos = _number(text, 0, "major", text)
        if not text.startswith(".", pos):
            raise SemverError(f"expected '.' after the major number in {text!r}")
        minor, pos = _number(text, pos + 1, "minor", text)
        if not text.startswith(".", pos):
            raise SemverError(f"expected '.' after the minor number in {text!r}")
        patch, pos = _number(text, pos + 1, "patch", text)
        pre: tuple[str, ...] = ()
        build = ""
        if text.startswith("-", pos):
            pre, pos = _identifiers(text, pos + 1, "pre-release", text)
        if text.startswith("+", pos):
            parts, pos = _identifiers(text, pos + 1, "build metadata", text)
            build = ".".join(parts)
        if pos != len(text):
            raise SemverError(f"unexpected {text[pos]!r} in version {text!r}")
        return cls(major, minor, patch, pre, build)

    def __str__(self) -> str:
        s = f"{self.major}.{self.minor}.{self.patch}"
        if self.pre:
            s += "-" + ".".join(self.pre)
        if self.build:
            s += "+" + self.build
        return s


_OPS = (">=", "<=", "=", ">", "<", "~", "^")


@dataclass(frozen=True)
class Comparator:
    op: str  # one of _OPS, or "*" for a wildcard without an operator (1.*, 1.2.*)
    major: int
    minor: int | None
    patch: int | None
    pre: tuple[str, ...] = ()

    def matches(self, v: Version) -> bool:
        """The comparator alone, before the pre-release rule that VersionReq applies."""
        op = self.op
        if op in ("=", "*"):
            return self._exact(v)
        if op == ">":
            return self._greater(v)
        if op == ">=":
            return self._exact(v) or self._greater(v)
        if op == "<":
            return self._less(v)
        if op == "<=":
            return self._exact(v) or self._less(v)
        if op == "~":
            return self._tilde(v)
        return self._caret(v)

    def names_pre_release_of(self, v: Version) -> bool:
        return (
            bool(self.pre)
            and self.major == v.major
            and self.minor == v.minor
            and self.patch == v.patch
        )

    def _exact(self, v: Version) -> bool:
        if v.major != self.major:
            return False
        if self.minor is not None and v.minor != self.minor:
            return False
        if self.patch is not None and v.patch != self.patch:
            return False
        return v.pre == self.pre

    def _compare(self, v: Version) -> int | None:
        """-1/0/1 for v against the comparator's version; None when a missing part makes it equal."""
        if v.major != self.major:
            return -1 if v.major < self.major else 1
        if self.minor is None:
            return None
        if v.minor != self.minor:
            return -1 if v.minor < self.minor else 1
        if self.patch is None:
            return None
        if v.patch != self.patch:
            return -1 if v.patch < self.patch else 1
        a, b = _pre_key(v.pre), _pre_key(self.pre)
        return (a > b) - (a < b)

    def _greater(self, v: Version) -> bool:
        return self._compare(v) == 1

    def _less(self, v: Version) -> bool:
        return self._compare(v) == -1

    def _tilde(self, v: Version) -> bool:
        if v.major != self.major:
            return False
        if self.minor is not None and v.minor != self.minor:
            return False
        if self.patch is not None and v.patch != self.patch:
            return v.patch > self.patch
        return _pre_key(v.pre) >= _pre_key(self.pre)

    def _caret(self, v: Version) -> bool:
        if v.major != self.major:
            return False
        if self.minor is None:
            return True
        if self.patch is None:
            return v.minor >= self.minor if self.major > 0 else v.minor == self.minor
        if self.major > 0:
            if v.minor != self.minor:
                return v.minor > self.minor
            if v.patch != self.patch:
                return v.patch > self.patch
        elif self.minor > 0:
            if v.minor != self.minor:
                return False
            if v.patch != self.patch:
                return v.patch > self.patch
        elif v.minor != self.minor or v.patch != self.patch:
            return False
        return _pre_key(v.pre) >= _pre_key(self.pre)


def _is_wildcard(text: str, pos: int) -> bool:
    return pos < len(text) and text[pos] in "*xX"


def _comparator(text: str, pos: int) -> tuple[Comparator, int]:
    op = next((o for o in _OPS if text.startswith(o, pos)), None)
    if op is None:
        op = "^"
        explicit = False
    else:
        pos += len(op)
        explicit = True
    while text.startswith(" ", pos):
        pos += 1
    major, pos = _number(text, pos, "major", text)
    minor = patch = None
    wildcard = False
    pre: tuple[str, ...] = ()
    if text.startswith(".", pos):
        pos += 1
        if _is_wildcard(text, pos):
            pos += 1
            wildcard = True
        else:
            minor, pos = _number(text, pos, "minor", text)
    if text.startswith(".", pos):
        pos += 1
        if _is_wildcard(text, pos):
            pos += 1
            wildcard = True
        elif wildcard:
            raise SemverError(f"a number after a wildcard in {text!r}")
        else:
            patch, pos = _number(text, pos, "patch", text)
    if wildcard and not explicit:
        op = "*"
    if patch is not None and text.startswith("-", pos):
        pre, pos = _identifiers(text, pos + 1, "pre-release", text)
    if patch is not None and text.startswith("+", pos):
        _, pos = _identifiers(text, pos + 1, "build metadata", text)
    while text.startswith(" ", pos):
        pos += 1
    return Comparator(op, major, minor, patch, pre), pos


@dataclass(frozen=True)
class VersionReq:
    comparators: tuple[Comparator, ...]

    @classmethod
    def parse(cls, text: str) -> VersionReq:
        rest = text.lstrip(" ")
        if _is_wildcard(rest, 0):
            if rest[1:].strip(" "):
                raise SemverError(f"a wildcard must be the only comparator: {text!r}")
            return cls(())
        comparators = []
        pos = len(text) - len(rest)
        while True:
            cmp, pos = _comparator(text, pos)
            comparators.append(cmp)
            if pos == len(text):
                break
            if text[pos] != ",":
                raise SemverError(f"expected ',' at {pos} in {text!r}, found {text[pos]!r}")
            pos += 1
            while text.startswith(" ", pos):
                pos += 1
            if len(comparators) == 32:
                raise SemverError(f"too many comparators in {text!r}")
        return cls(tuple(comparators))

    def matches(self, v: Version) -> bool:
        if not all(c.matches(v) for c in self.comparators):
            return False
        # A pre-release only matches when a comparator opts in to that release's pre-releases.
        return not v.pre or any(c.names_pre_release_of(v) for c in self.comparators)
