#!/usr/bin/env python3
"""Prove that scripts/packages.sh names every Debian package the build and
the tests need, whatever this machine already has.

A check by "is it installed?" passes on any machine that happens to have the
package (that is how a missing libclang-dev hid for weeks). This one looks at
what the build actually uses from the system -- the compilers and tools it
runs, the headers a C/C++ compile includes, the libclang that bindgen loads,
the corpus the tests read -- finds the Debian package that owns each file
(`dpkg -S`), and fails unless that package is one the scripts name or one of
their dependencies (the installed dependency closure, alternatives and
virtual packages included). Remove a package from the lists and this fails
on every machine, including one where the package is installed.

Usage: python3 scripts/check-packages.py   (exit 1 with a list of what is
missing; run after scripts/setup.sh or scripts/test.sh has installed them).
       python3 scripts/check-packages.py --without libclang-dev
                                             (the check as if the lists did not
name that package: it must fail, which scripts/test.sh asserts, so that the
check is known to bite on this very machine).
"""
import glob
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def listed(var):
    out = subprocess.run(["bash", "-c", f'. scripts/packages.sh; printf "%s\\n" "${{{var}[@]}}"'],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [p for p in out.split() if p]


def installed_db():
    """name -> (depends alternatives list, provides list) of installed packages."""
    fmt = "${db:Status-Abbrev}\t${Package}\t${Provides}\t${Depends}, ${Pre-Depends}\n"
    out = subprocess.run(["dpkg-query", "-W", "-f", fmt], capture_output=True, text=True).stdout
    db, provides = {}, {}
    strip = lambda s: re.sub(r"\(.*?\)|\[.*?\]|<.*?>", "", s).strip().split(":")[0]
    for line in out.splitlines():
        status, name, prov, deps = (line.split("\t") + ["", "", ""])[:4]
        if not status.startswith("ii"):
            continue
        alts = []
        for d in deps.split(","):
            group = [strip(a) for a in d.split("|") if strip(a)]
            if group:
                alts.append(group)
        db[name] = alts
        for p in prov.split(","):
            if strip(p):
                provides.setdefault(strip(p), set()).add(name)
    return db, provides


def closure(roots, db, provides):
    seen, todo = set(), list(roots)
    while todo:
        p = todo.pop()
        for real in ({p} if p in db else set()) | provides.get(p, set()):
            if real in seen:
                continue
            seen.add(real)
            for group in db.get(real, []):
                todo.extend(group)  # every installed alternative may be the one in use
    return seen


_OWNERS = {}


def _variants(path):
    cands = {path, os.path.realpath(path)}
    for c in list(cands):
        if c.startswith("/usr/"):
            cands.add(c[4:])
        elif c.startswith(("/bin/", "/lib/", "/sbin/")):
            cands.add("/usr" + c)
    return cands


def prefetch(paths):
    """Ask dpkg once for the owners of many files."""
    cands = sorted(set().union(*(_variants(p) for p in paths)) - set(_OWNERS)) if paths else []
    if not cands:
        return
    r = subprocess.run(["dpkg", "-S", *cands], capture_output=True, text=True)
    for c in cands:
        _OWNERS.setdefault(c, set())
    for line in r.stdout.splitlines():
        if line.startswith("diversion "):
            continue
        pkgs, sep, path = line.partition(": ")
        if sep and path in _OWNERS:
            _OWNERS[path] |= {p.strip().split(":")[0] for p in pkgs.split(",")}


def owners(path):
    """Debian packages owning `path` (tried as given, resolved, and across /usr-merge)."""
    prefetch([path])
    return set().union(*(_OWNERS.get(c, set()) for c in _variants(path)))


def libclang_candidates():
    """The libraries clang-sys (bindgen's loader) would accept, found the way
    it searches: LIBCLANG_PATH, then the system library directories."""
    dirs = [os.environ["LIBCLANG_PATH"]] if os.environ.get("LIBCLANG_PATH") else []
    dirs += glob.glob("/usr/lib/llvm-*/lib") + ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib",
                                                  "/usr/local/lib", "/usr/lib/aarch64-linux-gnu"]
    pat = re.compile(r"^libclang(-[0-9.]+)?\.so(\.[0-9.]+)?$")  # not libclang-cpp, not libclangAST.a
    return sorted({os.path.join(d, f) for d in dirs if os.path.isdir(d) for f in os.listdir(d) if pat.match(f)})


def headers(compiler, lang, source):
    r = subprocess.run([compiler, "-x", lang, "-M", "-"], input=source, capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr.strip()
    deps = r.stdout.replace("\\\n", " ").split(":", 1)[-1].split()
    return [d for d in deps if d.startswith("/usr/")], ""


def main():
    without = set()
    args = sys.argv[1:]
    while args:
        if args[0] == "--without" and len(args) > 1:
            without.add(args[1])
            args = args[2:]
        else:
            sys.exit(f"usage: {sys.argv[0]} [--without PACKAGE]...")
    build = [p for p in listed("CAIRN_APT_BUILD") if p not in without]
    test = [p for p in listed("CAIRN_APT_TEST") if p not in without]
    db, provides = installed_db()
    problems = []
    not_installed = [p for p in build + test if p not in db]
    if not_installed:
        problems.append(f"named but not installed (run scripts/test.sh first): {' '.join(not_installed)}")
    have = {"build": closure(build, db, provides), "tests": closure(build + test, db, provides)}
    checked = 0

    def need(scope, what, path):
        nonlocal checked
        if path is None or not os.path.exists(path):
            problems.append(f"{scope}: {what}: not found on this machine")
            return
        own = owners(path)
        checked += 1
        if not own:
            problems.append(f"{scope}: {what} ({path}) belongs to no Debian package")
        elif not own & have[scope]:
            problems.append(f"{scope}: {what} ({path}) comes from {', '.join(sorted(own))}, "
                            f"which no package named in scripts/packages.sh brings in")

    for tool in ["cc", "c++", "cmake", "make", "pkg-config", "ld", "ar"]:
        need("build", f"the `{tool}` command", shutil.which(tool))
    for compiler, lang, src in [
        ("cc", "c", "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <pthread.h>\n#include <math.h>\n"),
        ("c++", "c++", "#include <vector>\n#include <string>\n#include <thread>\n#include <atomic>\n#include <cmath>\n"),
    ]:
        hs, err = headers(compiler, lang, src)
        if hs is None:
            problems.append(f"build: `{compiler}` cannot compile standard {lang} headers: {err[:300]}")
            continue
        prefetch(hs)
        for h in hs:
            need("build", f"{lang} header", h)
    libs = libclang_candidates()
    if not libs:
        problems.append("build: no libclang for bindgen (llama-cpp-sys-2): clang-sys finds no "
                        "libclang.so / libclang-N.so (libclang-cpp does not count)")
    else:
        prefetch(libs)
        ok = [l for l in libs if owners(l) & have["build"]]
        checked += len(libs)
        if not ok:
            problems.append(f"build: libclang for bindgen: {', '.join(libs)} come from "
                            f"{', '.join(sorted(set().union(*(owners(l) for l in libs))) or ['no package'])}, "
                            "which no package named in scripts/packages.sh brings in")
    need("build", "the demo corpus (Python 3.11 docs)", "/usr/share/doc/python3.11/html/library/os.path.html")
    for tool in ["nats-server", "chromium", "npm", "node", "curl", "tesseract", "pdftoppm"]:
        need("tests", f"the `{tool}` command", shutil.which(tool))
    tessdata = sorted(glob.glob("/usr/share/tesseract-ocr/*/tessdata/eng.traineddata"))
    need("tests", "Tesseract's English data (OCR tests)", tessdata[0] if tessdata else None)

    if problems:
        print("scripts/packages.sh misses what the build or the tests need:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print(f"system packages: {checked} files the build and tests use all come from the {len(build)} + "
          f"{len(test)} packages named in scripts/packages.sh ({len(have['tests'])} with dependencies)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
