#!/usr/bin/env python3
"""Tests of deploy/local/audit-deps and its version matching (offline, stdlib only).

    python3 -B deploy/local/audit_deps_test.py        (./deploy/local/test runs it)
"""

import importlib.machinery
import importlib.util
import json
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.dont_write_bytecode = True
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cargo_semver import SemverError, Version, VersionReq  # noqa: E402

SCRIPT = HERE / "audit-deps"
ROOT = HERE.parent.parent
DB = ROOT / "deploy" / "advisories" / "rustsec.json"
CRATES_IO = "registry+https://github.com/rust-lang/crates.io-index"


def load_script():
    loader = importlib.machinery.SourceFileLoader("audit_deps", str(SCRIPT))
    spec = importlib.util.spec_from_loader("audit_deps", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


audit_deps = load_script()


def matches(req: str, version: str) -> bool:
    return VersionReq.parse(req).matches(Version.parse(version))


class VersionParsing(unittest.TestCase):
    def test_reads_the_parts_pre_release_and_build(self):
        v = Version.parse("1.0.4+wasi-0.2.12")
        self.assertEqual((v.major, v.minor, v.patch, v.pre, v.build), (1, 0, 4, (), "wasi-0.2.12"))
        v = Version.parse("0.45.0-alpha.1")
        self.assertEqual(v.pre, ("alpha", "1"))
        self.assertEqual(str(Version.parse("1.2.3-rc.1+b.7")), "1.2.3-rc.1+b.7")

    def test_rejects_what_the_semver_crate_rejects(self):
        for bad in ["", "1", "1.2", "01.2.3", "1.2.3-", "1.2.3-01", "1.2.3-a..b", "1.2.3+",
                    "v1.2.3", " 1.2.3", "1.2.3 ", "1.2.3.4", "1.x.3"]:
            with self.subTest(bad=bad), self.assertRaises(SemverError):
                Version.parse(bad)


class RequirementMatching(unittest.TestCase):
    CASES = [
        # a bare version is a caret requirement
        ("1.2.3", "1.2.3", True), ("1.2.3", "1.9.0", True), ("1.2.3", "2.0.0", False),
        ("1.2.3", "1.2.2", False),
        ("^1.2", "1.2.0", True), ("^1.2", "1.99.0", True), ("^1.2", "2.0.0", False),
        ("^1", "1.0.0", True), ("^1", "0.9.0", False),
        ("^0.2.3", "0.2.9", True), ("^0.2.3", "0.3.0", False), ("^0.2.3", "0.2.2", False),
        ("^0.0.3", "0.0.3", True), ("^0.0.3", "0.0.4", False),
        ("^0.0", "0.0.7", True), ("^0.0", "0.1.0", False), ("^0", "0.9.9", True),
        ("^ 0.9.2", "0.9.4", True),  # a space after the operator, as in some advisories
        ("~1.2.3", "1.2.9", True), ("~1.2.3", "1.3.0", False), ("~1.2.3", "1.2.2", False),
        ("~1.2", "1.2.0", True), ("~1.2", "1.3.0", False), ("~1", "1.9.0", True),
        ("~1", "2.0.0", False),
        ("=1.2.3", "1.2.3", True), ("=1.2.3", "1.2.4", False), ("=1.2", "1.2.7", True),
        ("=1.2", "1.3.0", False),
        ("1.*", "1.7.0", True), ("1.*", "2.0.0", False), ("1.2.*", "1.2.9", True),
        ("1.2.x", "1.3.0", False), ("*", "7.0.0", True),
        (">=1.2.3", "1.2.3", True), (">= 1.2.3", "1.2.2", False), ("> 1.2.3", "1.2.3", False),
        ("> 1.2", "1.2.9", False), ("> 1.2", "1.3.0", True), ("> 1", "1.9.0", False),
        ("< 1.3", "1.2.99", True), ("< 1.3", "1.3.0", False), ("<= 1.3", "1.3.5", True),
        ("<= 1.3", "1.4.0", False), ("<= 0.2.1", "0.2.1", True),
        # every comparator must hold
        (">= 1.2.3, < 1.3", "1.2.3", True), (">= 1.2.3, < 1.3", "1.2.99", True),
        (">= 1.2.3, < 1.3", "1.3.0", False), (">= 1.2.3, < 1.3", "1.2.2", False),
        ("< 0.10.0, >= 0.9.3", "0.9.5", True), ("< 0.10.0, >= 0.9.3", "0.10.0", False),
        (">= 0.9.7, <0.10.0", "0.9.7", True),
        # build metadata plays no part
        ("=1.1.3", "1.1.3+spec-1.1.0", True), (">= 0.25.20", "0.25.20+spec-1.1.0", True),
    ]

    PRE_RELEASE_CASES = [
        # a pre-release only matches if a comparator names its major.minor.patch with a pre-release
        (">= 1.0.0", "1.1.0-alpha.1", False), ("^1.0.0", "1.0.1-rc.1", False),
        (">= 1.0.0-alpha.1", "1.0.0-alpha.2", True), (">= 1.0.0-alpha.1", "1.0.0", True),
        (">= 1.0.0-alpha.1", "1.1.0-alpha.1", False), (">= 1.0.0-alpha.1", "1.0.0-alpha.0", False),
        (">= 0.44.5, < 0.45.0-alpha.1", "0.45.0-alpha.0", True),
        (">= 0.44.5, < 0.45.0-alpha.1", "0.45.0-alpha.1", False),
        (">= 0.44.5, < 0.45.0-alpha.1", "0.44.9", True),
        (">= 0.44.5, < 0.45.0-alpha.1", "0.45.0", False),
        (">= 0.104.0-alpha.6", "0.104.0-alpha.7", True), (">= 0.104.0-alpha.6", "0.104.0", True),
        ("< 1.0.0", "1.0.0-rc.1", False), ("< 1.0.0-rc.1", "1.0.0-beta.2", True),
        ("=1.0.0-rc.1", "1.0.0-rc.1", True), ("=1.0.0-rc.1", "1.0.0", False),
        ("~1.2.3-beta", "1.2.3-beta.2", True), ("~1.2.3-beta", "1.2.4-beta", False),
        ("^0.3.0-rc.1", "0.3.0-rc.2", True), ("^0.3.0-rc.1", "0.3.1", True),
        ("*", "1.0.0-alpha", False), ("1.*", "1.2.0-alpha", False),
        # precedence: numeric identifiers by value, below alphanumeric ones, shorter before longer
        ("> 1.0.0-beta.2", "1.0.0-beta.11", True), ("> 1.0.0-alpha", "1.0.0-alpha.1", True),
        ("> 1.0.0-alpha.1", "1.0.0-alpha.beta", True), ("> 1.0.0-rc.1", "1.0.0-beta.11", False),
        ("< 1.0.0-alpha.beta", "1.0.0-alpha.99", True), ("< 2.0.0-2", "2.0.0-10", False),
        ("< 3.0.0-0.gat.0", "3.0.0-0.gat", True),
    ]

    def test_follows_cargo_for_releases(self):
        for req, version, expected in self.CASES:
            with self.subTest(req=req, version=version):
                self.assertEqual(matches(req, version), expected)

    def test_follows_cargo_for_pre_releases(self):
        for req, version, expected in self.PRE_RELEASE_CASES:
            with self.subTest(req=req, version=version):
                self.assertEqual(matches(req, version), expected)

    def test_rejects_malformed_requirements(self):
        for bad in ["", ">= 1.2 < 1.3", ">= 01.2", "1.2-alpha", "1.*.3", ">=", "1.2,", "* , 1",
                    "=>1.2", ">= 1.2.3-01", "1.2.3.4"]:
            with self.subTest(bad=bad), self.assertRaises(SemverError):
                VersionReq.parse(bad)


class AdvisoryVerdict(unittest.TestCase):
    SMALLVEC = {"patched": [">= 0.6.3", "^0.3.4", "^0.4.5", "^0.5.1"], "unaffected": ["< 0.3.2"]}

    def affected(self, adv: dict, version: str) -> bool:
        adv = dict(adv, _reqs=[VersionReq.parse(r) for r in adv["patched"] + adv.get("unaffected", [])])
        return audit_deps.is_affected(adv, Version.parse(version))

    def test_a_version_is_affected_unless_patched_or_unaffected(self):
        for version, expected in [("0.3.1", False), ("0.3.2", True), ("0.3.4", False),
                                  ("0.4.4", True), ("0.5.1", False), ("0.6.2", True),
                                  ("0.6.3", False), ("1.0.0", False)]:
            with self.subTest(version=version):
                self.assertEqual(self.affected(self.SMALLVEC, version), expected)

    def test_without_patched_or_unaffected_versions_every_version_is_affected(self):
        self.assertTrue(self.affected({"patched": []}, "99.0.0"))


class ShippedDatabase(unittest.TestCase):
    def test_is_complete_sorted_and_small(self):
        db, by_package = audit_deps.load_db(DB)  # parses every requirement
        ids = [a["id"] for a in db["advisories"]]
        self.assertEqual(ids, sorted(set(ids)))
        self.assertGreater(len(ids), 1000)
        self.assertRegex(db["source"]["commit"], r"^[0-9a-f]{40}$")
        self.assertLess(DB.stat().st_size, 1_000_000)
        self.assertIn("RUSTSEC-2021-0003", [a["id"] for a in by_package["smallvec"]])


def lock_file(*packages: tuple[str, str, str | None]) -> str:
    text = "version = 4\n"
    for name, version, source in packages:
        text += f'\n[[package]]\nname = "{name}"\nversion = "{version}"\n'
        if source:
            text += f'source = "{source}"\n'
    return text


class CheckRun(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = Path(tmp.name)
        self.lock = self.dir / "Cargo.lock"
        self.accept = self.dir / "accepted.toml"
        self.db = DB

    def run_check(self, *packages, accept: str = "") -> subprocess.CompletedProcess:
        self.lock.write_text(lock_file(("app", "0.1.0", None), *packages))
        self.accept.write_text(accept)
        return subprocess.run(
            [sys.executable, "-B", str(SCRIPT), "--lock", str(self.lock), "--db", str(self.db),
             "--accept", str(self.accept), "--today", "2026-12-01"],
            capture_output=True, text=True, timeout=60,
        )

    def synthetic_db(self, *advisories: dict) -> None:
        self.db = self.dir / "db.json"
        source = {"repository": "x", "commit": "0" * 40, "date": "2026-11-01"}
        self.db.write_text(json.dumps({"format": 1, "source": source, "advisories": list(advisories)}))

    def test_fails_on_a_known_vulnerable_version_from_the_real_database(self):
        r = self.run_check(("smallvec", "1.6.0", CRATES_IO))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("error: RUSTSEC-2021-0003 smallvec 1.6.0: ", r.stdout)
        self.assertIn("(patched: '>= 0.6.14, < 1.0.0', '>= 1.6.1')", r.stdout)
        self.assertIn(": 1 vulnerable, 0 accepted", r.stdout)

    def test_passes_when_that_advisory_is_accepted_with_a_reason(self):
        accept = '[[accept]]\nid = "RUSTSEC-2021-0003"\nreason = "tested"\n'
        r = self.run_check(("smallvec", "1.6.0", CRATES_IO), accept=accept)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("accepted: RUSTSEC-2021-0003 smallvec 1.6.0", r.stdout)
        self.assertIn("; reason: tested", r.stdout)

    def test_passes_on_the_patched_version_and_reports_a_stale_acceptance(self):
        accept = '[[accept]]\nid = "RUSTSEC-2021-0003"\nreason = "tested"\n'
        r = self.run_check(("smallvec", "1.6.1", CRATES_IO), accept=accept)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("warning: RUSTSEC-2021-0003 is accepted in", r.stdout)
        self.assertIn("matches nothing", r.stdout)

    def test_checks_only_crates_io_packages(self):
        r = self.run_check(("smallvec", "1.6.0", "git+https://example.com/smallvec#abc"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("0 crates.io packages (2 others not checked)", r.stdout)

    def test_rejects_an_acceptance_without_reason_or_with_an_unknown_id(self):
        for accept in ['[[accept]]\nid = "RUSTSEC-2021-0003"\nreason = " "\n',
                       '[[accept]]\nid = "RUSTSEC-2021-0003"\n',
                       '[[accept]]\nid = "RUSTSEC-1999-0001"\nreason = "typo"\n']:
            with self.subTest(accept=accept):
                r = self.run_check(("smallvec", "1.6.0", CRATES_IO), accept=accept)
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)

    def test_warns_on_informational_advisories_and_skips_withdrawn_ones(self):
        base = {"package": "demo", "date": "2026-01-01", "patched": [">= 2.0.0"]}
        self.synthetic_db(
            dict(base, id="RUSTSEC-2026-9001", title="demo is unmaintained", informational="unmaintained"),
            dict(base, id="RUSTSEC-2026-9002", title="withdrawn one", withdrawn="2026-02-01"),
            dict(base, id="RUSTSEC-2026-9003", title="pre-releases", unaffected=["< 1.0.0"]),
        )
        r = self.run_check(("demo", "1.2.0", CRATES_IO))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("warning: RUSTSEC-2026-9001 demo 1.2.0 [unmaintained]: demo is unmaintained", r.stdout)
        self.assertNotIn("RUSTSEC-2026-9002", r.stdout)
        self.assertIn("error: RUSTSEC-2026-9003 demo 1.2.0", r.stdout)
        self.assertIn("1 vulnerable, 0 accepted, 1 warnings", r.stdout)
        self.assertIn("(advisory-db 000000000000, 2026-11-01, 30 days old)", r.stdout)
        # 2.0.0-rc.1 is neither >= 2.0.0 nor < 1.0.0 in Cargo's rules: affected
        r = self.run_check(("demo", "2.0.0-rc.1", CRATES_IO))
        self.assertIn("error: RUSTSEC-2026-9003 demo 2.0.0-rc.1", r.stdout)
        r = self.run_check(("demo", "2.0.0", CRATES_IO))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


ADVISORY = """```toml
[advisory]
id = "{id}"
package = "{package}"
date = 2021-01-08
{extra}
[affected]
os = ["windows", "linux"]

[affected.functions]
"{package}::f" = ["< 1.0.0"]

[versions]
patched = {patched}
```

# {title}

Body text.
"""


class Refresh(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = Path(tmp.name)
        self.checkout = self.dir / "advisory-db"
        self.note = self.dir / "note.txt"
        self.note.write_text("Source: github.com/rustsec/advisory-db, commit "
                             f"{'ab' * 20} (2026-08-21).\n")
        self.add("RUSTSEC-2021-0002", "b-crate", '[">= 1.0.0, < 1.1", "^0.9.2"]',
                 'informational = "unsound"\nwithdrawn = "2021-02-01"', "Title  two")
        self.add("RUSTSEC-2021-0001", "a-crate", "[]", "", "Title one")
        self.rust = self.checkout / "rust" / "std"  # not crates.io: left out
        self.rust.mkdir(parents=True)
        (self.rust / "CVE-2020-1.md").write_text("```toml\n[advisory]\n```\n")

    def add(self, aid, package, patched, extra, title):
        folder = self.checkout / "crates" / package
        folder.mkdir(parents=True, exist_ok=True)
        text = ADVISORY.format(id=aid, package=package, patched=patched, extra=extra, title=title)
        (folder / f"{aid}.md").write_text(text)

    def refresh(self, out: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-B", str(SCRIPT), "--refresh", str(self.checkout), "--note",
             str(self.note), "--db", str(out)],
            capture_output=True, text=True, timeout=60,
        )

    def test_writes_a_sorted_compact_database_with_its_source(self):
        out = self.dir / "rustsec.json"
        r = self.refresh(out)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        db = json.loads(out.read_text())
        self.assertEqual(db["source"]["commit"], "ab" * 20)
        self.assertEqual(db["source"]["date"], "2026-08-21")
        self.assertEqual(db["advisories"], [
            {"id": "RUSTSEC-2021-0001", "package": "a-crate", "date": "2021-01-08",
             "title": "Title one", "patched": [], "os": ["linux", "windows"]},
            {"id": "RUSTSEC-2021-0002", "package": "b-crate", "date": "2021-01-08",
             "title": "Title two", "informational": "unsound", "withdrawn": "2021-02-01",
             "patched": [">= 1.0.0, < 1.1", "^0.9.2"], "os": ["linux", "windows"]},
        ])
        again = self.dir / "again.json"
        self.refresh(again)
        self.assertEqual(out.read_bytes(), again.read_bytes())

    def test_refuses_a_requirement_cargo_would_not_parse(self):
        self.add("RUSTSEC-2021-0003", "c-crate", '[">= 1.0 < 2"]', "", "Bad")
        out = self.dir / "rustsec.json"
        r = self.refresh(out)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("RUSTSEC-2021-0003.md", r.stderr)
        self.assertFalse(out.exists())


if __name__ == "__main__":
    unittest.main()
