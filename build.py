#!/usr/bin/env python3
"""The project's single entry point: setup, test, demo, bench NAME, package, deploy.

Runs with the system Python 3 (standard library only); everything else lives in `.venv`, created with
`--system-site-packages` so Debian's QGIS and GDAL bindings are visible next to pip's torch.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VENV_PY = VENV / "bin" / "python"
APT_PACKAGES = ["python3-qgis", "qgis-providers", "gdal-bin", "python3-gdal", "python3-venv", "python3-scipy",
                "qgis", "xvfb", "imagemagick", "xauth", "openbox", "xdotool"]
# scipy: the tests read the MATLAB fixtures of ../shared/data; qgis (the desktop app and qgis_process), Xvfb, a
# window manager (openbox), xdotool and imagemagick's `import`: the end-to-end test runs the real QGIS, clicks
# and types in it through X events and takes screenshots
REQUIREMENTS = [ROOT / "requirements.txt", ROOT / "requirements-dev.txt"]
NODEPS_REQUIREMENTS = ROOT / "requirements-nodeps.txt"
ALL_REQUIREMENTS = [*REQUIREMENTS, NODEPS_REQUIREMENTS]
STAMP = VENV / ".requirements.sha256"


def say(msg: str) -> None:
    print(f"[build] {msg}", flush=True)


def run(cmd: list[str], **kw) -> int:
    return subprocess.call([str(c) for c in cmd], **kw)


def missing_apt_packages() -> list[str]:
    if not shutil.which("dpkg-query"):
        return []
    missing = []
    for pkg in APT_PACKAGES:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        if "install ok installed" not in out.stdout:
            missing.append(pkg)
    return missing


def setup_apt() -> None:
    if not shutil.which("dpkg-query"):
        say("not a Debian system: make sure QGIS 3.22+ with its Python bindings and GDAL's Python bindings are "
            "installed for /usr/bin/python3")
        return
    missing = missing_apt_packages()
    if not missing:
        say(f"system packages present: {' '.join(APT_PACKAGES)}")
        return
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if os.geteuid() != 0:
        say(f"missing system packages: {' '.join(missing)}. Run:\n    sudo apt-get update && sudo {' '.join(cmd)}\n"
            "then run this command again.")
        sys.exit(1)
    say(f"installing system packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if run(["apt-get", "update", "-qq"], env=env) or run(cmd, env=env):
        say("apt-get failed; see its output above")
        sys.exit(1)


def setup_venv() -> None:
    if VENV_PY.exists():
        say(f"virtual environment present: {VENV}")
    else:
        say(f"creating {VENV} (with system site packages, for QGIS and GDAL)")
        if run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", VENV]):
            sys.exit(1)
    digest = requirements_digest()
    if STAMP.exists() and STAMP.read_text().strip() == digest:
        say("Python packages up to date")
        return
    say("installing Python packages: " + ", ".join(p.name for p in REQUIREMENTS))
    pip = [VENV_PY, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    with_deps = [a for req in REQUIREMENTS for a in ("-r", req)]
    if run(pip + with_deps) or run(pip + ["--no-deps", "-r", NODEPS_REQUIREMENTS]):
        say("pip install failed; see its output above")
        sys.exit(1)
    STAMP.write_text(digest)


def requirements_digest() -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in ALL_REQUIREMENTS)).hexdigest()


def cmd_setup(_args=None) -> int:
    setup_apt()
    setup_venv()
    return 0


def needs_setup() -> bool:
    if missing_apt_packages() or not VENV_PY.exists() or not STAMP.exists():
        return True
    return STAMP.read_text().strip() != requirements_digest()


def venv_env() -> dict:
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def cmd_test(args) -> int:
    if needs_setup():
        cmd_setup()
    return run([VENV_PY, "-m", "pytest", "-p", "no:cacheprovider", *(args.pytest_args or ["tests"])],
               cwd=ROOT, env=venv_env())


def cmd_demo(args) -> int:
    if needs_setup():
        cmd_setup()
    return run([VENV_PY, ROOT / "tools" / "demo.py", *args.demo_args], cwd=ROOT, env=venv_env())


def cmd_bench(args) -> int:
    if needs_setup():
        cmd_setup()
    bench_req = ROOT / "requirements-bench.txt"  # bench-only packages (scikit-learn for the classic baselines)
    if run([VENV_PY, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", bench_req]):
        say("pip install of the benchmark requirements failed; see its output above")
        return 1
    script = ROOT / "bench" / (args.name.replace("-", "_") + ".py")
    if not script.exists():
        names = sorted(p.stem.replace("_", "-") for p in (ROOT / "bench").glob("*.py") if not p.stem.startswith("_"))
        say(f"no benchmark named {args.name!r}; available: {', '.join(names)}")
        return 2
    return run([VENV_PY, script, *args.bench_args], cwd=ROOT, env=venv_env())


PLUGIN = "specaware_qgis"
PACKAGED = [(ROOT / PLUGIN, PLUGIN), (ROOT / "engine", f"{PLUGIN}/engine"), (ROOT / "resources", f"{PLUGIN}/resources"),
            (ROOT / "metadata.txt", f"{PLUGIN}/metadata.txt"), (ROOT / "LICENSE", f"{PLUGIN}/LICENSE")]
SKIPPED_PARTS = {"__pycache__", "tests", "test", ".pytest_cache"}
SKIPPED_SUFFIXES = {".pyc", ".pyo", ".pth", ".pt", ".npz", ".tif", ".gpkg", ".zip"}


def plugin_version() -> str:
    for line in (ROOT / "metadata.txt").read_text().splitlines():
        if line.startswith("version="):
            return line.split("=", 1)[1].strip()
    raise SystemExit("metadata.txt has no version= line")


def plugin_files():
    """(source file, path inside the zip) for everything the plugin ships: no caches, tests, data or weights."""
    for src, arc in PACKAGED:
        files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
        for f in files:
            rel = f.relative_to(src) if src.is_dir() else Path()
            if SKIPPED_PARTS & set(rel.parts) or f.suffix in SKIPPED_SUFFIXES:
                continue
            yield f, f"{arc}/{rel.as_posix()}" if src.is_dir() else arc


def cmd_package(_args=None) -> Path:
    """dist/specaware_qgis-<version>.zip: one top-level folder holding the plugin, the engine and resources."""
    out = ROOT / "dist" / f"{PLUGIN}-{plugin_version()}.zip"
    out.parent.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".zip.part")
    os.close(fd)
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for f, arc in plugin_files():
            z.write(f, arc)
    os.replace(tmp, out)
    say(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return out


def qgis_profiles_dir(platform: str = sys.platform, environ=os.environ, home: Path | None = None) -> Path:
    """Where QGIS 3 keeps its user profiles on `platform`."""
    home = Path(home or Path.home())
    if platform == "win32":
        return Path(environ.get("APPDATA") or home / "AppData" / "Roaming") / "QGIS" / "QGIS3" / "profiles"
    if platform == "darwin":
        return home / "Library" / "Application Support" / "QGIS" / "QGIS3" / "profiles"
    return Path(environ.get("XDG_DATA_HOME") or home / ".local" / "share") / "QGIS" / "QGIS3" / "profiles"


def ini_value(text: str) -> str:
    """A value as QSettings' INI format reads it back as one string (quoted when it holds , ; " or \\)."""
    if any(c in text for c in ',;"\\') or text != text.strip():
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def read_ini(ini: Path, section: str, key: str) -> str | None:
    """A value of a QSettings INI file (unquoted), or None when it is not set."""
    current = None
    for line in ini.read_text(encoding="utf-8").splitlines() if ini.exists() else []:
        if line.startswith("["):
            current = line.strip()[1:-1]
        elif current == section and line.split("=", 1)[0].strip() == key and "=" in line:
            value = line.split("=", 1)[1].strip()
            return value[1:-1].replace('\\"', '"').replace("\\\\", "\\") if value.startswith('"') else value
    return None


def write_ini(ini: Path, section: str, key: str, value: str) -> None:
    """Set key=value in [section] of a QSettings INI file (QGIS3.ini), keeping every other line; written
    atomically, so QGIS never reads half a file."""
    lines = ini.read_text(encoding="utf-8").splitlines() if ini.exists() else []
    entry = f"{key}={ini_value(value)}"
    start = next((i for i, line in enumerate(lines) if line.strip() == f"[{section}]"), None)
    if start is None:
        lines += ([""] if lines and lines[-1].strip() else []) + [f"[{section}]", entry]
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
        found = [i for i in range(start + 1, end) if lines[i].split("=", 1)[0].strip() == key]
        if found:
            lines[found[0]] = entry
        else:
            while end > start + 1 and not lines[end - 1].strip():
                end -= 1
            lines.insert(end, entry)
    ini.parent.mkdir(parents=True, exist_ok=True)
    tmp = ini.with_name(ini.name + ".part")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, ini)


def configure_profile(profile: Path, engine_python: Path | None, replace: bool = False) -> None:
    """Enable the plugin in the profile and record the engine's Python there (unless, without `replace`, the
    profile already names another one that exists), saying what was done."""
    ini = profile / "QGIS" / "QGIS3.ini"
    write_ini(ini, "PythonPlugins", PLUGIN, "true")
    say(f"enabled {PLUGIN} in {ini}")
    if engine_python is None:
        say("no engine Python recorded: this checkout has no .venv (run `python3 build.py setup`), and no "
            "--engine-python was given; set it in the dock under Engine and weights")
        return
    current = read_ini(ini, "specaware", "engine_python")
    if current and Path(current).exists() and Path(current) != engine_python and not replace:
        say(f"the profile keeps its engine Python {current} (--engine-python PATH replaces it)")
        return
    write_ini(ini, "specaware", "engine_python", engine_python.as_posix())
    say(f"recorded the engine Python {engine_python} in {ini}")


def cmd_deploy(args) -> int:
    """Unpack the package into a QGIS profile's plugin folder, replacing an older copy in one rename; enable it
    there and record the engine's Python."""
    package = cmd_package()
    profile = Path(args.profiles_dir or qgis_profiles_dir()) / args.profile
    plugins = profile / "python" / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=plugins, prefix=".specaware-deploy-"))
    with zipfile.ZipFile(package) as z:
        z.extractall(staging)
    target = plugins / PLUGIN
    old = plugins / f".{PLUGIN}-old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    (staging / PLUGIN).rename(target)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
    say(f"installed into {target}")
    engine_python = Path(args.engine_python).absolute() if args.engine_python else (
        VENV_PY.absolute() if VENV_PY.exists() else None)
    configure_profile(profile, engine_python, replace=bool(args.engine_python))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(prog="build.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="install system packages (as root), the venv and Python packages").set_defaults(
        func=cmd_setup)
    s = sub.add_parser("test", help="set up when needed, then run the whole pytest suite")
    s.add_argument("pytest_args", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_test)
    s = sub.add_parser("demo", help="fine-tune and classify a built-in synthetic scene, write a QGIS project")
    s.add_argument("demo_args", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_demo)
    s = sub.add_parser("bench", help="run a benchmark from bench/")
    s.add_argument("name")
    s.add_argument("bench_args", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_bench)
    sub.add_parser("package", help="write dist/specaware_qgis-<version>.zip").set_defaults(
        func=lambda a: cmd_package(a) and 0)
    s = sub.add_parser("deploy", help="install the plugin into a QGIS profile")
    s.add_argument("--profile", default="default")
    s.add_argument("--profiles-dir", help="QGIS profiles folder (default: the user's QGIS3 profiles)")
    s.add_argument("--engine-python", help="the Python with torch the plugin runs the engine with (default: this "
                   "checkout's .venv/bin/python)")
    s.set_defaults(func=cmd_deploy)
    args, passed_on = p.parse_known_args()  # `test -q`, `demo --out X`: options for pytest or the script
    for name in ("pytest_args", "demo_args", "bench_args"):
        if hasattr(args, name):
            setattr(args, name, passed_on + (getattr(args, name) or []))
            passed_on = []
    if passed_on:
        p.error(f"unrecognized arguments: {' '.join(passed_on)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
