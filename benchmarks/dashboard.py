"""Benchmark: the dashboard at ImageNet shape (issue 12).

    python benchmarks/dashboard.py [--quick] [--json] [--no-browser] [--keep DIR] [--out FILE]

Builds a synthetic ImageNet-shaped workspace (`benchmarks/_scale_workspace.py`: 1,000 classes, 999 × 12
images + one class of 1,300, float16 feature memmaps, 3 models, 5,000 labelled pairs, the saved
discovery, rankings and gaps; ``--quick``: 100 classes, one of 300, 2 models, 500 pairs; plus made-up
crops and sensitivity results of every class, so the Crops page has its 1,000-class tables), then measures

- **server-side script time** of every page with Streamlit's AppTest, cold (caches cleared) and warm
  (the same page run again), and of the main interactions (class switch, next page of Rankings,
  label-and-advance on Features, a gap-view change, the embedding colour change, and — with the session
  state the browser's event would leave — the gap-bar click landing on Rankings and a 48-point embedding
  selection), warm;
- **browser round trips** with Playwright in Debian Chromium against ``streamlit run`` (from the action
  until the app reports ``notRunning`` with no skeleton left): next page, label-and-advance by
  keyboard, gap-bar click landing on Rankings, embedding box selection; and the **peak RSS** (VmHWM)
  of the Streamlit process. Screenshots of each page go to ``--screens`` (default /tmp/screens/bench).

Targets: ≤ 1.0 s warm server-side, ≤ 1.5 s round trip, RSS ≤ 1.5 GB; misses are listed. Results go to
``benchmarks/results/dashboard.json`` (``--out``); ``--json`` prints them as one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# this file is named dashboard.py: its folder must not shadow the `dashboard` package on the path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

from benchmarks._scale_workspace import DATASET, build_scale_workspace  # noqa: E402

APP = str(ROOT / "dashboard" / "app.py")
TARGET_WARM_S, TARGET_ROUND_TRIP_S, TARGET_RSS_MB = 1.0, 1.5, 1536
PAGES = ["home", "features", "rankings", "gaps", "embeddings", "crops"]


def _clear_caches() -> None:
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()


def _app(ws_root: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=600)
    at.session_state["sa_workspace"] = ws_root
    at.session_state["sa_annotator"] = "bench"
    return at


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _check(at, what: str) -> None:
    if at.exception or at.error:
        raise RuntimeError(f"{what}: {[e.value for e in [*at.exception, *at.error]][:2]}")


def _drop_bench_labels(ws_root: str) -> int:
    """Remove the answers this benchmark recorded (annotator "bench"), so every run measures the same
    workspace (a label-and-advance answer changes verdicts, hence rankings)."""
    from core.workspace import Workspace

    ws = Workspace(ws_root)
    labels = ws.labels(DATASET, "model-0")
    ids = [int(i) for i in labels[labels.annotator == "bench"].id]
    if ids:
        ws.delete_labels(ids)
    return len(ids)


def _fabricate_crop_results(ws_root: str, *, seed: int = 0) -> bool:
    """Write crops.json and sensitivity.csv for every class of model-0 with seeded, made-up numbers,
    when the workspace has none: the benchmark times the Crops page's reading and drawing at 1,000
    classes, not the (model-forward) crops and sensitivity jobs. Returns whether it wrote them."""
    import numpy as np
    import pandas as pd

    from core.audit.artifacts import audit_files, load_crops
    from core.audit.sensitivity import CORRUPTIONS
    from core.data.manifest import Manifest
    from core.workspace import Workspace

    ws = Workspace(ws_root)
    if load_crops(ws, DATASET, "model-0") is not None:
        return False
    rec = ws.get_dataset(DATASET)
    K = len(Manifest.load(rec.manifest_path, root=rec.root).class_names)
    rng = np.random.default_rng(seed)
    n = rng.integers(1, 60, K)
    before = rng.uniform(0.2, 0.9, K)
    after = np.clip(before + rng.normal(0.05, 0.1, K), 0, 1)
    per = [dict(class_index=c, n=int(n[c]), acc_before=float(before[c]), acc_after=float(after[c]))
           for c in range(K)]
    ws.write_json(audit_files(DATASET, "model-0").crops,
                  {"acc_before": float(np.average(before, weights=n)), "acc_after": float(np.average(after, weights=n)),
                   "n": int(n.sum()), "per_class": per, "skipped_classes": [], "split": "test", "fraction": 0.2})
    rows = []
    for kind in CORRUPTIONS:
        for c in [-1, *range(K)]:
            a0 = float(rng.uniform(0.5, 1))
            am, ar = a0 - float(rng.uniform(0, 0.5)), a0 - float(rng.uniform(0, 0.2))
            rows.append(dict(class_index=c, corruption=kind, n=int(n.sum()) if c < 0 else int(n[c]), acc_clean=a0,
                             acc_masked=am, acc_random=ar, drop_masked=a0 - am, drop_random=a0 - ar,
                             mask_area=float(rng.uniform(0.1, 0.5)), mask_source="core"))
    ws.write_text(audit_files(DATASET, "model-0").sensitivity, pd.DataFrame(rows).to_csv(index=False))
    return True


def server_side(ws_root: str, repeats: int) -> dict:
    """Cold and warm AppTest script times per page, and warm times of the main interactions."""
    out: dict = {"pages": {}, "interactions": {}}
    for name in PAGES:
        at = _app(ws_root)
        if name != "home":
            at.run()
            _check(at, "home")
            at.switch_page(f"app_pages/{name}.py")
        _clear_caches()
        cold = _timed(at.run)
        _check(at, name)
        warm = min(_timed(at.run) for _ in range(repeats))
        _check(at, name)
        out["pages"][name] = {"cold_s": round(cold, 3), "warm_s": round(warm, 3)}

    def interaction(page: str, prepare, act) -> float:
        at = _app(ws_root)
        at.run()
        at.switch_page(f"app_pages/{page}.py").run()
        _check(at, page)
        prepare(at)
        times = []
        for _ in range(repeats):
            act(at)
            times.append(_timed(at.run))
            _check(at, page)
        return round(min(times), 3)

    classes = iter(range(1, 10_000))
    out["interactions"]["class switch (Rankings)"] = interaction(
        "rankings", lambda at: None, lambda at: at.selectbox(key="sa_class").set_value(next(classes)))
    out["interactions"]["next page (Rankings, 1,300-image class)"] = interaction(
        "rankings", lambda at: at.selectbox(key="sa_class").set_value(0).run(),
        lambda at: at.button(key="rank_next").click())

    def label_prepare(at):
        at.button(key="features_next").click().run()

    out["interactions"]["label and advance (Features)"] = interaction(
        "features", label_prepare, lambda at: at.button(key="quick_unsure").click())
    _drop_bench_labels(ws_root)
    views = iter(["smallest gap", "widest interval", "largest gap"] * 10)
    out["interactions"]["gap view change (Gaps)"] = interaction(
        "gaps", lambda at: None, lambda at: at.selectbox(key="gaps_view").set_value(next(views)))
    colours = iter(["correct", "aligned", "class"] * 10)
    out["interactions"]["embedding colour change"] = interaction(
        "embeddings", lambda at: None, lambda at: at.selectbox(key="emb_colour").set_value(next(colours)))

    # AppTest cannot click a Plotly bar or draw a box: these two put into the session what the browser's
    # event leaves there (the bar's on_select callback, dashboard/app_pages/gaps.py `_on_bar_select`; the
    # chart's selection state), then time the rerun(s) that follow
    bar_classes = iter(range(3, 10_000))

    def bar_click(at):
        if at.title[0].value != "Spurious gaps":       # back on Gaps (untimed) after the previous click
            at.switch_page("app_pages/gaps.py").run()
            _check(at, "gaps")
        at.session_state["rank_split"] = at.session_state["gaps_split"]
        at.session_state["rank_ranking"] = None
        at.session_state["sa_class_pending"] = next(bar_classes)
        at.session_state["gaps_go_rankings"] = True

    out["interactions"]["gap-bar click → Rankings (callback state)"] = interaction("gaps", lambda at: None, bar_click)
    selection: list = []

    def embedding_prepare(at):
        spec = json.loads(at.get("plotly_chart")[0].proto.spec)
        selection.extend({"customdata": [cd[0]]} for tr in spec["data"] for cd in tr["customdata"][:4])
        del selection[48:]

    out["interactions"]["embedding selection (48 points, selection state)"] = interaction(
        "embeddings", embedding_prepare,
        lambda at: at.session_state.__setitem__("emb_chart", {"selection": {"points": list(selection),
                                                                             "point_indices": [], "box": [],
                                                                             "lasso": []}}))
    return out


# ------------------------------------------------------------------------------------------------ browser
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _vmhwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _idle(page, timeout_ms: int = 120_000) -> None:
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout_ms)
    page.wait_for_function("() => !document.querySelector(\"[data-testid='stSkeleton']\")", timeout=timeout_ms)


def _settle(page) -> None:
    _idle(page)
    page.wait_for_timeout(800)
    _idle(page)


def browser_round_trips(ws_root: str, screens: Path, repeats: int) -> dict:
    """Round trips of the main interactions and the Streamlit process's peak RSS; {} with a reason
    when Chromium or Playwright is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "playwright is not installed"}
    if not chromium:
        return {"skipped": "chromium is not installed"}
    port = _free_port()
    env = {**os.environ, "SPURAUDIT_WORKSPACE": ws_root, "PYTHONPATH": str(ROOT)}
    log = open(screens / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", APP, "--server.headless=true",
                             f"--server.port={port}", "--server.address=127.0.0.1",
                             "--browser.gatherUsageStats=false", "--server.fileWatcherType=none"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    out: dict = {"round_trips_s": {}, "screens": str(screens)}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().decode().strip() == "ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("streamlit did not start")
            time.sleep(0.5)
        args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=args)
            page = browser.new_context(viewport={"width": 1400, "height": 1800}).new_page()
            page.set_default_timeout(180_000)

            def trip(name: str, act, wait=None) -> None:
                times = []
                for _ in range(repeats):
                    t = time.perf_counter()
                    act()
                    page.wait_for_timeout(100)                  # let the rerun start before waiting for its end
                    if wait is not None:
                        wait()
                    _idle(page)
                    times.append(time.perf_counter() - t - 0.1)
                    page.wait_for_timeout(500)
                out["round_trips_s"][name] = round(min(times), 3)

            for name in PAGES:
                page.goto(f"{url}/{'' if name == 'home' else name}")
                page.wait_for_selector("h1")
                _settle(page)
                page.screenshot(path=str(screens / f"{name}.png"))
            # next page of the big class
            page.goto(f"{url}/rankings")
            page.get_by_role("button", name="Next ▶").wait_for()
            _settle(page)
            trip("next page (Rankings)", lambda: page.get_by_role("button", name="Next ▶").click())
            # label and advance by keyboard
            page.goto(f"{url}/features")
            page.get_by_role("button", name="Next unlabelled").wait_for()
            _settle(page)
            page.get_by_role("button", name="Next unlabelled").click()
            page.get_by_text("Now labelling").wait_for()
            _settle(page)
            page.screenshot(path=str(screens / "features_focus.png"))

            def key4():
                before = page.locator("h3", has_text="Now labelling").first.text_content()
                page.locator("h1").click()
                t = time.perf_counter()
                page.keyboard.press("4")
                page.wait_for_function("(b) => { const h = [...document.querySelectorAll('h3')].find("
                                       "e => e.textContent.includes('Now labelling')); "
                                       "return h && h.textContent !== b; }", arg=before)
                _idle(page)
                return time.perf_counter() - t

            page.get_by_label("Annotator").fill("bench")
            page.get_by_label("Annotator").press("Enter")
            _settle(page)
            out["round_trips_s"]["label and advance (keyboard)"] = round(min(key4() for _ in range(repeats)), 3)
            _drop_bench_labels(ws_root)
            # gap-bar click -> Rankings
            def bar_click():
                page.goto(f"{url}/gaps")
                page.wait_for_selector(".js-plotly-plot .bars path")
                _settle(page)
                box = page.locator(".js-plotly-plot .bars path").nth(0).bounding_box()
                t = time.perf_counter()
                page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                page.get_by_role("heading", name="Spuriosity rankings").wait_for()
                _idle(page)
                return time.perf_counter() - t
            out["round_trips_s"]["gap-bar click → Rankings"] = round(min(bar_click() for _ in range(repeats)), 3)
            page.screenshot(path=str(screens / "rankings_after_bar_click.png"))
            # embedding selection
            def select_box():
                page.goto(f"{url}/embeddings")
                page.wait_for_selector(".js-plotly-plot .main-svg")
                _settle(page)
                b = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
                page.mouse.move(b["x"] + 0.3 * b["width"], b["y"] + 0.3 * b["height"])
                page.mouse.down()
                for fx, fy in ((0.7, 0.3), (0.7, 0.7), (0.3, 0.7), (0.3, 0.31)):
                    page.mouse.move(b["x"] + fx * b["width"], b["y"] + fy * b["height"], steps=5)
                t = time.perf_counter()
                page.mouse.up()
                page.get_by_text("selected image(s)").wait_for()     # the rerun drew the selection
                _idle(page)
                return time.perf_counter() - t
            out["round_trips_s"]["embedding selection"] = round(min(select_box() for _ in range(repeats)), 3)
            page.screenshot(path=str(screens / "embeddings_selection.png"))
            browser.close()
        out["peak_rss_mb"] = round(_vmhwm_mb(proc.pid), 1)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    return out


def misses(result: dict) -> list[str]:
    out = []
    for name, t in result["server"]["pages"].items():
        if t["warm_s"] > TARGET_WARM_S:
            out.append(f"{name} warm {t['warm_s']:.2f} s > {TARGET_WARM_S} s")
    for name, t in result["server"]["interactions"].items():
        if t > TARGET_WARM_S:
            out.append(f"{name} {t:.2f} s > {TARGET_WARM_S} s")
    for name, t in result["browser"].get("round_trips_s", {}).items():
        if t > TARGET_ROUND_TRIP_S:
            out.append(f"round trip {name} {t:.2f} s > {TARGET_ROUND_TRIP_S} s")
    rss = result["browser"].get("peak_rss_mb")
    if rss is not None and rss > TARGET_RSS_MB:
        out.append(f"peak RSS {rss:.0f} MB > {TARGET_RSS_MB} MB")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 classes (CI size)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--no-browser", action="store_true", help="skip the Playwright round trips")
    ap.add_argument("--keep", type=Path, default=None, help="build (or reuse) the workspace here")
    ap.add_argument("--out", type=Path, default=None,
                    help="results file (default benchmarks/results/dashboard.json; --quick: none)")
    ap.add_argument("--screens", type=Path, default=Path("/tmp/screens/bench"))
    a = ap.parse_args(argv)
    size = dict(num_classes=100, per_class=12, big_class=300, dim=128, models=2, n_labels=500) if a.quick else \
        dict(num_classes=1000, per_class=12, big_class=1300, dim=512, models=3, n_labels=5000)
    tmp = None
    root = a.keep
    if root is None:
        tmp = tempfile.mkdtemp(prefix="spuraudit-dash-bench-")
        root = Path(tmp)
    try:
        t = time.perf_counter()
        ws_dir = root / "ws"
        built = None
        if not (ws_dir / "audit.db").exists():
            built = build_scale_workspace(root, **size)
        else:
            _drop_bench_labels(str(ws_dir))
        build_s = time.perf_counter() - t
        _fabricate_crop_results(str(ws_dir))
        repeats = 2 if a.quick else 3
        result = {"size": size, "dataset": DATASET, "build_s": round(build_s, 1),
                  "build": built["timings"] if built else "reused", "cpu_count": os.cpu_count(),
                  "targets": {"warm_s": TARGET_WARM_S, "round_trip_s": TARGET_ROUND_TRIP_S,
                              "rss_mb": TARGET_RSS_MB}}
        result["server"] = server_side(str(ws_dir), repeats)
        a.screens.mkdir(parents=True, exist_ok=True)
        result["browser"] = {"skipped": "--no-browser"} if a.no_browser or a.quick else \
            browser_round_trips(str(ws_dir), a.screens, repeats)
        result["misses"] = misses(result)
        out = a.out if a.out is not None else (None if a.quick else ROOT / "benchmarks" / "results" / "dashboard.json")
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2) + "\n")
        if a.json:
            print(json.dumps(result))
        else:
            print(f"workspace: {size['num_classes']} classes, built in {build_s:.0f} s")
            for name, t in result["server"]["pages"].items():
                print(f"  {name:<12} cold {t['cold_s']:6.2f} s  warm {t['warm_s']:6.2f} s")
            for name, t in result["server"]["interactions"].items():
                print(f"  {name:<45} {t:6.2f} s")
            for name, t in result["browser"].get("round_trips_s", {}).items():
                print(f"  round trip {name:<34} {t:6.2f} s")
            if "peak_rss_mb" in result["browser"]:
                print(f"  peak RSS of the Streamlit process {result['browser']['peak_rss_mb']:.0f} MB")
            print("misses: " + ("; ".join(result["misses"]) or "none"))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
