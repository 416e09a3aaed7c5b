"""The whole audit in a real browser (issue 11), with no CLI call in the test body: the test writes the
data, then everything happens through the dashboard —

A. an ImageFolder of small PNGs with a planted background cue (class = a bar's orientation; background
   colour = the class's in 95 % of train, 50 % in val/test): create the workspace on the New audit page →
   preview and import it → train a small CNN as a job → run the audit job → label the top feature of
   class 0 as spurious on Features → the Gaps page shows a positive gap → run the audit again (it reuses
   the finished steps and re-ranks) → head tuning launched on Mitigate reaches done;
B. a CSV dataset with an object-mask column: import with the mask column picked from the header → train →
   audit job, whose machine labels come from the masks → Dataset page (masks outlined) and Gaps.

Screenshots go to docs/screenshots/ (the README shows them); each step's time is printed and saved in
docs/screenshots/timings.json.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.e2e.browser_helpers import wait_idle
from tests.e2e.conftest import serve_app

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "docs" / "screenshots"
COLOURS = {0: (200, 40, 40), 1: (40, 60, 200)}
CLASSES = ("horizontal", "vertical")


def write_bars(root: Path, *, masks: Path | None = None, seed: int = 0, n=(160, 60, 40), size: int = 32) -> list:
    """ImageFolder ``root/{train,val,test}/{horizontal,vertical}/NNN.png``: a light bar (the object) on a
    coloured, noisy background (the planted cue). Returns (rel path, class, split) rows; with ``masks``
    the bar's mask is written under ``masks/<rel path>``. Rows: (rel path, class, split, background 0/1)."""
    rng = np.random.default_rng(seed)
    rows = []
    for split, count, conflict in (("train", n[0], 0.05), ("val", n[1], 0.5), ("test", n[2], 0.5)):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count // 2):
                bg = COLOURS[1 - c] if rng.random() < conflict else COLOURS[c]
                img = np.clip(np.full((size, size, 3), bg, int) + rng.integers(-20, 21, (size, size, 3)), 0, 255)
                m = np.zeros((size, size), np.uint8)
                cy, cx = rng.integers(10, size - 10, 2)
                if c == 0:
                    m[cy - 1:cy + 2, cx - 6:cx + 6] = 255
                else:
                    m[cy - 6:cy + 6, cx - 1:cx + 2] = 255
                img[m > 0] = 235
                rel = f"{split}/{name}/{i:03d}.png"
                Image.fromarray(img.astype(np.uint8)).save(root / rel)
                if masks is not None:
                    (masks / split / name).mkdir(parents=True, exist_ok=True)
                    Image.fromarray(m).save(masks / rel)
                rows.append((rel, name, split, int(bg == COLOURS[1])))
    return rows


class Steps:
    """Times each named step (printed at the end and saved beside the screenshots)."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._t = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.times[name] = round(now - self._t, 1)
        print(f"[browser audit] {name}: {self.times[name]:.1f} s", flush=True)
        self._t = now


def shot(page, name: str) -> None:
    wait_idle(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def main(page):
    return page.locator("[data-testid='stMain']")


def choose(page, label: str, option: str, *, scope=None) -> None:
    """Pick ``option`` in the selectbox labelled ``label`` (in the main area unless ``scope``): nothing to
    do when it already shows it; else open it, type to filter (see TESTING.md) and take the option."""
    box = (scope or main(page)).locator("[data-testid='stSelectbox']").filter(
        has=page.get_by_text(label, exact=True)).first
    box.wait_for()
    if box.inner_text().splitlines()[-1].strip() == option:
        return
    box.locator("input").click()
    page.keyboard.type(option)
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def type_in(page, label: str, value: str) -> None:
    field = main(page).get_by_label(label, exact=True)
    field.fill(value)
    field.press("Enter")
    wait_idle(page)


def click(page, name: str) -> None:
    main(page).get_by_role("button", name=name, exact=True).click()
    wait_idle(page)


def wait_job(ws, kind: str, timeout_s: float = 240) -> object:
    """The newest job of ``kind`` once it is no longer active (read from the workspace the page wrote)."""
    deadline = time.monotonic() + timeout_s
    while True:
        mine = [j for j in ws.list_jobs(limit=50) if j.kind == kind]
        if mine and not mine[0].active:
            assert mine[0].status == "done", f"{kind} job ended {mine[0].status}: {mine[0].error}"
            return mine[0]
        assert time.monotonic() < deadline, f"{kind} job did not finish in {timeout_s} s"
        time.sleep(0.5)


def goto(page, url: str, path: str, dataset: str | None = None) -> None:
    """Open page ``path`` (a reload: a new session), then pick ``dataset`` in the sidebar when given."""
    page.goto(f"{url}/{path}")
    page.wait_for_selector("h1", timeout=60_000)
    wait_idle(page)
    if dataset is not None:
        choose(page, "Dataset", dataset, scope=page.locator("[data-testid='stSidebar']"))


def import_train_audit(page, url, ws, steps, *, name: str, source: str | None, path: Path, csv_mask: bool = False):
    """New audit page: preview + import, train as a job, run the audit job (shared by both flows)."""
    goto(page, url, "new_audit")
    if source:
        choose(page, "Source", source)
    type_in(page, "Dataset name", name)
    type_in(page, "Path", str(path))
    if csv_mask:
        choose(page, "Label column", "category")
        choose(page, "Bias column", "background")
        assert main(page).locator("[data-testid='stSelectbox']").filter(
            has=page.get_by_text("Object mask column", exact=True)).inner_text().find("mask") >= 0
    click(page, "Preview")
    main(page).get_by_text("usable images").first.wait_for()
    main(page).get_by_text("usable images").first.scroll_into_view_if_needed()
    shot(page, f"{name}-1-preview")
    click(page, "Import")
    wait_job(ws, "dataset-add")
    steps.done(f"{name}: preview + import (job)")
    goto(page, url, "new_audit")
    choose(page, "Dataset the model is for", name)
    type_in(page, "Model name", f"{name}-cnn")
    type_in(page, "Epochs", "3")
    click(page, "Train as a job")
    wait_job(ws, "train")
    steps.done(f"{name}: train small CNN, 3 epochs (job)")
    goto(page, url, "new_audit")
    choose(page, "Dataset", name)
    type_in(page, "Top features per class (k)", "3")
    click(page, "Run the audit")
    wait_job(ws, "audit-chain")
    goto(page, url, "new_audit")
    choose(page, "Dataset", name)
    main(page).get_by_text("Steps of the last audit").wait_for()
    steps.done(f"{name}: audit chain (job)")
    main(page).get_by_text("Steps of the last audit").scroll_into_view_if_needed()


def test_browser_audit(browser, tmp_path):
    from core.audit.artifacts import load_chain_state
    from core.workspace import Workspace

    steps = Steps()
    folder = tmp_path / "ws"
    bars = tmp_path / "bars"
    write_bars(bars)
    csv_root = tmp_path / "csvbars"
    rows = write_bars(csv_root, masks=csv_root / "masks", seed=1)
    (csv_root / "list.csv").write_text("image,category,split,background,mask\n" + "".join(
        f"{rel},{name},{split},{'red' if bg == 0 else 'blue'},masks/{rel}\n" for rel, name, split, bg in rows))
    steps.done("write the two datasets (test setup)")
    with serve_app(str(folder), tmp_path / "server.log") as url:
        context = browser.new_context(viewport={"width": 1400, "height": 1800})
        page = context.new_page()
        page.set_default_timeout(60_000)
        try:
            goto(page, url, "new_audit")
            click(page, "Create a workspace here")
            main(page).get_by_role("button", name="Build the demo").wait_for()
            shot(page, "0-new-audit-empty")
            ws = Workspace(folder, create=False)
            steps.done("server up, workspace created on the page")

            # ---- A: ImageFolder with a planted background cue
            import_train_audit(page, url, ws, steps, name="bars", source=None, path=bars)
            shot(page, "bars-2-audit-steps")
            state = load_chain_state(ws, "bars", "bars-cnn")
            assert [s["status"] for s in state["steps"]] == ["done"] * 6
            goto(page, url, "features")
            form = main(page).locator("[data-testid='stForm']").first
            form.wait_for()
            main(page).get_by_label("Annotator", exact=True).fill("e2e")
            main(page).get_by_label("Annotator", exact=True).press("Enter")
            form.get_by_text("Spurious: background").click()
            form.get_by_role("button", name="Save label").click()
            deadline = time.monotonic() + 60
            while not len(ws.labels("bars", "bars-cnn", source="human")):
                assert time.monotonic() < deadline, "the label never reached the workspace"
                time.sleep(0.25)
            shot(page, "bars-3-features-labelled")
            steps.done("bars: label the top feature of class 0 on Features")
            goto(page, url, "gaps")
            page.wait_for_selector(".js-plotly-plot .bars path")
            metric = main(page).locator("[data-testid='stMetric']").filter(has_text="Pooled gap")
            value = metric.locator("[data-testid='stMetricValue']").inner_text()
            assert value.startswith("+") and float(value.split()[0]) > 0, value
            shot(page, "bars-4-gaps")
            steps.done(f"bars: Gaps page shows the pooled gap ({value})")
            goto(page, url, "new_audit")
            type_in(page, "Top features per class (k)", "3")          # the same k: discovery is reused
            n_chain = len([j for j in ws.list_jobs() if j.kind == "audit-chain"])
            click(page, "Run the audit")
            deadline = time.monotonic() + 30
            while len([j for j in ws.list_jobs() if j.kind == "audit-chain"]) == n_chain:
                assert time.monotonic() < deadline, "the second audit job was not started"
                time.sleep(0.25)
            wait_job(ws, "audit-chain")
            state = load_chain_state(ws, "bars", "bars-cnn")
            assert [s["status"] for s in state["steps"]] == ["reused"] * 3 + ["done"] * 3
            steps.done("bars: audit again (extract/discover/labels reused; re-rank)")
            goto(page, url, "mitigate")
            form = main(page).locator("[data-testid='stForm']")
            form.get_by_role("button", name="Debias and compare").wait_for()
            form.locator("[data-testid='stMultiSelect']").get_by_role("button", name="Remove error-tuning").click()
            epochs = form.get_by_role("spinbutton", name="Head epochs")
            epochs.fill("3")
            low_k = form.get_by_role("spinbutton", name="Low-spuriosity images / class")
            low_k.fill("20")
            form.get_by_role("button", name="Debias and compare").click()
            wait_job(ws, "compare", timeout_s=300)
            goto(page, url, "mitigate")
            main(page).get_by_text("Finished runs").wait_for()
            shot(page, "bars-5-mitigate-done")
            steps.done("bars: head tuning on Mitigate reaches done (job)")

            # ---- B: CSV with an object-mask column; machine labels from the masks
            import_train_audit(page, url, ws, steps, name="csvbars", source="CSV file listing the images",
                               path=csv_root / "list.csv", csv_mask=True)
            state = load_chain_state(ws, "csvbars", "csvbars-cnn")
            assert state["steps"][2]["result"]["masks"] > 0, state["steps"][2]
            machine = ws.labels("csvbars", "csvbars-cnn", source="masks")
            assert len(machine) > 0 and (machine.answer == "spurious_background").any()
            shot(page, "csvbars-2-audit-steps")
            goto(page, url, "dataset", dataset="csvbars")
            main(page).locator("[data-testid='stImage']").first.wait_for()
            shot(page, "csvbars-3-dataset-masks")
            goto(page, url, "gaps", dataset="csvbars")
            page.wait_for_selector(".js-plotly-plot .bars path")
            value = main(page).locator("[data-testid='stMetric']").filter(has_text="Pooled gap").locator(
                "[data-testid='stMetricValue']").inner_text()
            shot(page, "csvbars-4-gaps")
            steps.done(f"csvbars: Dataset page + Gaps from mask labels ({value})")
        finally:
            context.close()
    total = round(sum(steps.times.values()), 1)
    print("[browser audit] total:", total, "s")
    (SHOTS / "timings.json").write_text(json.dumps({**steps.times, "total": total}, indent=2) + "\n")
