"""New audit: bring your own dataset and model and run the whole audit, from the browser alone.

1. **Dataset** — a source (ImageFolder, CSV, Waterbirds, CelebA, DisEnt folders, or an offline builder
   with its parameters) and a path on the machine running the dashboard; for a CSV the columns are
   picked from its header. *Preview* loads it without writing anything (`core.data.preview`): first
   rows, class counts, split sizes, bias groups, bad rows with their reason. *Import* runs as a job
   (``dataset-add`` / ``dataset-build``), optionally skipping the bad rows (kept as the dataset's skipped list).
2. **Model** — train one as a job (``train``) or register a checkpoint for an architecture of the
   registry (`core.models.workspace_models.register_checkpoint`; a key mismatch is shown as its message).
3. **Run the audit** — one job (``audit-chain``, `core.audit.chain`): extract → discover → machine
   labels → rank → gaps → report, each step's state shown; a rerun reuses the finished steps.

On a workspace folder without a workspace, the page offers to create one; on an empty one, to build the
demo as a job (``demo``). All validation goes through `dashboard.components.forms` (`core.config`).
"""
from __future__ import annotations

import inspect
import shlex
from pathlib import Path

import pandas as pd
import streamlit as st

from core.audit.artifacts import load_chain_state, load_summary
from core.audit.chain import CHAIN_STEPS, AuditChainConfig
from core.data import SOURCES, SYNTHETIC_KINDS
from core.data.jobs import DatasetAddJob, DatasetBuildJob
from core.data.preview import csv_columns, preview_source
from core.data.synthetic import get_builder
from core.errors import SpurAuditError
from core.models.jobs import TrainJob
from core.models.registry import available_models
from core.models.train import TrainConfig
from core.models.workspace_models import register_checkpoint
from core.workspace import Workspace
from dashboard import resources
from dashboard.components import forms
from dashboard.components.guard import run_page
from dashboard.components.job_monitor import job_monitor, launch, recent_jobs
from dashboard.components.state import DATASET_KEY, MODEL_KEY, md_escape, workspace_text

SOURCE_LABELS = {"imagefolder": "ImageFolder (one folder per class)", "csv": "CSV file listing the images",
                 "waterbirds": "Waterbirds (metadata.csv)", "celeba": "CelebA (attribute lists)",
                 "disent": "DisEnt folders (align/conflict/valid/test)", "builder": "Offline builder (no files needed)"}
PATH_HELP = {"imagefolder": "the folder holding one sub-folder per class (or train/val/test folders)",
             "csv": "the CSV file; image paths in it are relative to its folder",
             "waterbirds": "the folder holding metadata.csv", "celeba": "the folder holding list_attr_celeba.txt",
             "disent": "the folder holding align/, conflict/, valid/ and test/"}
NONE = "(none)"
PREVIEW_KEY = "na_preview"           # (options key, DatasetPreview | error text) of the last preview
BUILDER_FIELDS = {"conflict": (0.0, 1.0), "rho": (0.0, 1.0), "rho_test": (0.0, 1.0), "rho_eval": (0.0, 1.0),
                  "rho_left": (0.0, 1.0), "rho_right": (0.0, 1.0), "sigma": (0.0, 1.0)}
SIZE_FIELDS = ("n_train", "n_val", "n_test")
TRAIN_ARCHS = ("small_cnn", "mlp", "resnet18", "resnet50")


# ------------------------------------------------------------------------------------------------ workspace
def _workspace() -> Workspace | None:
    """The workspace of the sidebar folder; offers to create one where there is none."""
    root = Path(workspace_text()).expanduser()
    if (root / "audit.db").exists():
        return resources.workspace(str(root.resolve()))
    st.info(f"The folder {md_escape(root)} holds no SpurAudit workspace yet. Create one there to start an audit "
            "(or type another folder in the sidebar).", icon=":material/info:")
    if st.button("Create a workspace here", type="primary", key="na_create_ws", icon=":material/create_new_folder:"):
        Workspace(root)
        st.rerun()
    return None


def _demo_block(ws: Workspace) -> None:
    with st.container(border=True):
        st.markdown("**Build the demo** — two complete audits built from data that ships with the packages "
                    "(digits on textures with object masks; Colored MNIST), as a background job.")
        quick = st.checkbox("Quick version (seconds; small sizes)", value=False, key="na_demo_quick")
        if st.button("Build the demo", key="na_demo", icon=":material/rocket_launch:"):
            launch(ws, "demo", {"quick": bool(quick)})
            st.rerun()
        job_monitor(ws, recent_jobs(ws, "demo", limit=1), key="na_demo_jobs")


# ------------------------------------------------------------------------------------------------ dataset
def _loader_options(source: str, path: str) -> dict | None:
    """The loader options the person picks for ``source`` (None while a CSV's header cannot be read)."""
    opts: dict = {}
    if source == "csv":
        if not path.strip():
            st.caption("Type the CSV's path to pick its columns.")
            return None
        columns = forms.attempt(lambda: csv_columns(path))
        if columns is None:
            return None
        c1, c2, c3 = st.columns(3)
        guess = lambda names, default: next((c for c in columns if c.lower() in names), default)  # noqa: E731
        opts["path_col"] = c1.selectbox("Image path column", columns, key="na_csv_path",
                                        index=columns.index(guess(("path", "file", "filename", "image"), columns[0])))
        opts["label_col"] = c2.selectbox("Label column", columns, key="na_csv_label",
                                         index=columns.index(guess(("label", "y", "class", "target"), columns[-1])))
        optional = [NONE] + columns
        for col, key, label, names in (
                (c3, "bias_col", "Bias column", ("bias", "place", "background")),
                (c1, "split_col", "Split column", ("split", "partition")),
                (c2, "mask_col", "Object mask column", ("mask", "mask_path", "segmentation"))):
            pick = col.selectbox(label, optional, key=f"na_csv_{key}", index=optional.index(guess(names, NONE)),
                                 help="optional" + ("; an image per row, nonzero = object, blank = no mask"
                                                    if key == "mask_col" else ""))
            if pick != NONE:
                opts[key] = pick
    if source in ("imagefolder", "waterbirds"):
        mask_dir = st.text_input("Object mask folder (optional)", key=f"na_maskdir_{source}",
                                 help="masks mirroring the images: <folder>/<image path>.png, nonzero = object")
        if mask_dir.strip():
            opts["mask_dir"] = mask_dir.strip()
    if source == "celeba":
        c1, c2 = st.columns(2)
        opts["target"] = c1.text_input("Target attribute", "Blond_Hair", key="na_celeba_target")
        opts["bias_attr"] = c2.text_input("Bias attribute", "Male", key="na_celeba_bias")
    if not st.checkbox("Open every image to find unreadable ones (slower on very large datasets)", value=True,
                       key=f"na_check_{source}"):
        opts["check_images"] = False
    if source in ("imagefolder", "csv", "disent"):
        c1, c2 = st.columns(2)
        opts["seed"] = int(c1.number_input("Split seed", value=0, step=1, key=f"na_seed_{source}",
                                           help="used only when the source has no split"))
        opts["val_fraction"] = float(c2.number_input("Validation fraction", value=0.1, min_value=0.0, max_value=0.9,
                                                     step=0.05, key=f"na_valfrac_{source}",
                                                     help="used only when the source has no val split"))
    return opts


def _show_preview(preview) -> None:
    st.markdown(f"**Preview** — {preview.n} usable images, {len(preview.class_names)} classes; nothing written yet.")
    c1, c2 = st.columns(2)
    c1.caption("Split sizes")
    c1.dataframe(pd.DataFrame([preview.split_sizes]), hide_index=True)
    if preview.conflict_fraction:
        c2.caption("Bias-conflicting fraction per split")
        c2.dataframe(pd.DataFrame([{s: f"{v:.1%}" for s, v in preview.conflict_fraction.items()}]), hide_index=True)
    if preview.with_mask:
        c2.caption(f"{preview.with_mask} images have an object mask.")
    st.caption("First rows")
    st.dataframe(preview.head, hide_index=True)
    c1, c2 = st.columns(2)
    c1.caption("Images per class and split")
    c1.dataframe(preview.class_counts)
    if preview.groups is not None:
        c2.caption("Bias groups (train): images per class and bias value")
        c2.dataframe(preview.groups)
    for note in preview.notes:
        st.caption(f"Note: {md_escape(note)}")
    if preview.n_bad:
        st.warning(f"{preview.n_bad} bad row(s) found: the import stops on them unless you choose to skip them.",
                   icon=":material/warning:")
        st.dataframe(preview.bad_rows, hide_index=True)
    else:
        st.caption("No bad rows found.")


def _dataset_section(ws: Workspace) -> None:
    st.subheader("1 · Dataset")
    sources = list(SOURCES) + ["builder"]
    source = st.selectbox("Source", sources, format_func=SOURCE_LABELS.get, key="na_source")
    name = st.text_input("Dataset name", key="na_ds_name", placeholder="blank = the folder's name",
                         help="letters, digits, '-', '_' and '.'")
    replace = st.checkbox("Replace a dataset of the same name", key="na_ds_replace")
    if source == "builder":
        _builder_form(ws, name, replace)
    else:
        path = st.text_input("Path", key=f"na_path_{source}", help=PATH_HELP[source])
        opts = _loader_options(source, path)
        if opts is not None:
            key = repr((source, path, sorted(opts.items())))
            if st.button("Preview", key="na_preview_btn", icon=":material/visibility:"):
                try:
                    with st.spinner("Reading the dataset (every image is opened once)…"):
                        st.session_state[PREVIEW_KEY] = (key, preview_source(source, path, **opts))
                except SpurAuditError as exc:
                    st.session_state[PREVIEW_KEY] = (key, str(exc))
            held = st.session_state.get(PREVIEW_KEY)
            if held and held[0] == key:
                if isinstance(held[1], str):
                    st.error(held[1], icon=":material/error:")
                else:
                    _show_preview(held[1])
                    skip = st.checkbox("Skip bad rows (they are kept in the dataset's skipped list)",
                                       value=held[1].n_bad > 0, key="na_skip_bad")
                    if st.button("Import", type="primary", key="na_import", icon=":material/download:"):
                        job = forms.attempt(lambda: forms.checked(DatasetAddJob, {
                            "name": name.strip() or _default_name(path), "source": source, "path": path.strip(),
                            "skip_bad": bool(skip),
                            "replace": bool(replace), "options": opts}, what="dataset import"))
                        if job is not None and _name_free(ws, job.name, replace):
                            launch(ws, "dataset-add", {"name": job.name, "source": job.source, "path": job.path,
                                                       "skip_bad": job.skip_bad, "replace": job.replace,
                                                       "options": job.options}, device="cpu")
                            st.rerun()
            elif held is None or held[0] != key:
                st.caption("Preview the dataset before importing it.")
    for job_id in recent_jobs(ws, ("dataset-add", "dataset-build"), limit=1):
        job_monitor(ws, [job_id], key="na_ds_jobs")
        job = ws.get_job(job_id)
        if job.status == "done" and job.result and job.result.get("skipped"):
            st.caption(f"{job.result['skipped']} bad row(s) were skipped; the Dataset page lists them.")


def _default_name(path: str) -> str:
    """The dataset name when none is typed: the folder's (or CSV file's) name, made a valid name."""
    stem = Path(path.strip()).expanduser().stem if path.strip() else ""
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in stem).strip("-.") or "dataset"


def _name_free(ws: Workspace, name: str, replace: bool) -> bool:
    if ws.has_dataset(name) and not replace:
        forms.show_error(SpurAuditError(f"dataset {name!r} already exists; pick another name or tick "
                                        "'Replace a dataset of the same name'"))
        return False
    return True


def _builder_form(ws: Workspace, name: str, replace: bool) -> None:
    kind = st.selectbox("Builder", SYNTHETIC_KINDS, key="na_builder")
    params = {n: p.default for n, p in inspect.signature(get_builder(kind)).parameters.items()
              if n not in ("out_dir", "progress", "mnist_path", "digit_size")}
    cols = st.columns(4)
    values: dict = {}
    for i, (field, default) in enumerate(params.items()):
        col = cols[i % 4]
        if field in BUILDER_FIELDS:
            values[field] = col.number_input(field, value=float(default), step=0.01, format="%.3f",
                                             key=f"na_b_{kind}_{field}")
        elif field in SIZE_FIELDS:
            v = col.number_input(f"{field} (0 = all)", value=0, min_value=0, step=50, key=f"na_b_{kind}_{field}")
            if v:
                values[field] = int(v)
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            values[field] = col.number_input(field, value=default, key=f"na_b_{kind}_{field}")
    if st.button("Build", type="primary", key="na_build", icon=":material/construction:"):
        seed = int(values.pop("seed", 0))
        job = forms.attempt(lambda: forms.checked(DatasetBuildJob, {"name": name.strip() or kind, "kind": kind, "seed": seed,
                                                                    "replace": bool(replace), "params": values},
                                                  what="dataset build"))
        if job is not None and _name_free(ws, job.name, replace):
            launch(ws, "dataset-build", {"name": job.name, "kind": job.kind, "seed": job.seed, "replace": job.replace,
                                         "params": job.params}, device="cpu")
            st.rerun()


# ------------------------------------------------------------------------------------------------ model
def _pick(ws: Workspace, label: str, options: list[str], key: str, shared: str) -> str | None:
    if not options:
        return None
    current = st.session_state.get(shared)
    index = options.index(current) if current in options else 0
    return st.selectbox(label, options, index=index, key=key)


def _model_section(ws: Workspace, datasets: list[str]) -> None:
    st.subheader("2 · Model")
    if not datasets:
        st.caption("Import or build a dataset first.")
        return
    dataset = _pick(ws, "Dataset the model is for", datasets, "na_model_ds", DATASET_KEY)
    how = st.radio("How", ["Train a new model", "Register a checkpoint"], horizontal=True, key="na_model_how")
    name = st.text_input("Model name", key="na_model_name", placeholder=f"blank = {dataset}-cnn")
    name = name.strip() or f"{dataset}-cnn"
    devices = resources.device_choices()
    if how == "Train a new model":
        c1, c2, c3, c4 = st.columns(4)
        arch = c1.selectbox("Architecture", TRAIN_ARCHS, key="na_arch")
        epochs = c2.number_input("Epochs", value=5, step=1, key="na_epochs")
        eps = c3.number_input("Adversarial ε (L2, 0 = off)", value=0.0, step=0.25, key="na_eps",
                              help="L2-PGD adversarial training radius in [0, 1] pixel space; robust features "
                                   "make the audit's activation maps sharper")
        lr = c4.number_input("Learning rate", value=1e-3, format="%.4f", step=1e-4, key="na_lr")
        c1, c2, c3 = st.columns(3)
        batch = c1.number_input("Batch size", value=128, step=16, key="na_batch")
        image_size = c2.number_input("Resize images to (0 = keep)", value=0, min_value=0, step=8, key="na_imgsize")
        device = c3.selectbox("Device", devices, key="na_train_device")
        if st.button("Train as a job", type="primary", key="na_train", icon=":material/model_training:"):
            def build() -> dict:
                cfg = forms.checked(TrainConfig, {"epochs": epochs, "adv_eps": eps, "lr": lr, "batch_size": batch},
                                    what="training")
                job = forms.checked(TrainJob, {"name": name.strip(), "dataset": dataset, "arch": arch,
                                               "config": {"epochs": cfg.epochs, "adv_eps": cfg.adv_eps, "lr": cfg.lr,
                                                          "batch_size": cfg.batch_size},
                                               "image_size": int(image_size) or None, "device": device},
                                    what="training")
                if ws.has_model(job.name):
                    raise SpurAuditError(f"model {job.name!r} already exists; pick another name")
                return {"name": job.name, "dataset": job.dataset, "arch": job.arch, "config": job.config,
                        "image_size": job.image_size}
            params = forms.attempt(build)
            if params is not None:
                launch(ws, "train", params, device=device)
                st.rerun()
    else:
        archs = available_models()
        c1, c2 = st.columns(2)
        arch = c1.selectbox("Architecture", archs, key="na_reg_arch",
                            index=archs.index("robust-resnet50") if "robust-resnet50" in archs else 0)
        if arch.endswith("<name>"):
            family = arch[: -len("<name>")]
            inner = c2.text_input(f"{family} model name", key=f"na_reg_{family}",
                                  placeholder="resnet18" if family == "timm:" else "ViT-B-32")
            arch = family + inner.strip()
        ckpt = st.text_input("Checkpoint file", key="na_reg_ckpt",
                             help="a .pt/.pth file on this machine (robustness-library checkpoints work for "
                                  "robust-resnet50); blank = the architecture's default weights")
        head = st.text_input("Head classes file (optional)", key="na_reg_head",
                             placeholder="/data/imagenet/LOC_synset_mapping.txt",
                             help="the checkpoint's outputs in order, one class id per line (ImageNet's "
                                  "LOC_synset_mapping.txt for an ImageNet-1k model): its head is kept and "
                                  "restricted to this dataset's classes, matched by name (wnid folders)")
        if st.button("Register", type="primary", key="na_register", icon=":material/save:"):
            def register() -> dict:
                if arch.endswith(":"):
                    raise SpurAuditError(f"type the {arch} model name (e.g. {arch}resnet18)")
                path = str(forms.check_file(ckpt, what="checkpoint", suffixes=forms.WEIGHT_SUFFIXES)) \
                    if ckpt.strip() else None
                head_file = str(forms.check_file(head, what="head classes file")) if head.strip() else None
                with st.spinner("Loading the checkpoint…"):
                    return register_checkpoint(ws, name.strip(), dataset=dataset, arch=arch, checkpoint=path,
                                               head_classes=head_file)
            out = forms.attempt(register)
            if out is not None:
                st.success(f"Registered {md_escape(out['model'])} ({md_escape(out['arch'])}: {out['feature_dim']} "
                           f"features, {out['num_classes']} classes"
                           + ("; the checkpoint's head restricted to them" if out["head_rows"] else "") + ").",
                           icon=":material/check_circle:")
    job_monitor(ws, recent_jobs(ws, "train", dataset=dataset, limit=1), key="na_train_jobs")


# ------------------------------------------------------------------------------------------------ audit
def _steps_table(state: dict) -> pd.DataFrame:
    rows = {s["step"]: s for s in state.get("steps", [])}
    return pd.DataFrame([{"step": step, "status": rows.get(step, {}).get("status", "—"),
                          "seconds": rows.get(step, {}).get("seconds")} for step in CHAIN_STEPS if step in rows])


def _audit_section(ws: Workspace, datasets: list[str]) -> None:
    st.subheader("3 · Run the audit")
    if not datasets:
        st.caption("Import or build a dataset first.")
        return
    dataset = _pick(ws, "Dataset", datasets, "na_audit_ds", DATASET_KEY)
    models = [m.name for m in ws.list_models() if m.dataset in (dataset, None)]
    if not models:
        st.caption("Train or register a model for this dataset first.")
        return
    model = _pick(ws, "Model", models, "na_audit_model", MODEL_KEY)
    c1, c2, c3 = st.columns(3)
    k = c1.number_input("Top features per class (k)", value=5, step=1, key="na_k")
    splits = [s for s in ("val", "test") if s in resources.manifest(ws, dataset).splits()]
    eval_split = c2.selectbox("Rank and measure gaps on", splits or ["val"], key="na_eval_split")
    device = c3.selectbox("Device", resources.device_choices(), key="na_audit_device")
    st.page_link("app_pages/features.py", icon=":material/upload_file:",   # issue 14: labels you already have
                 label="Have labels already (a labels CSV, Salient ImageNet's answers and masks)? Import them on "
                       "Features → Import labels")
    with st.expander("Machine labels from CLIP / SAM (optional: only when you have their weights)"):
        st.caption("Object masks of the dataset label features automatically. CLIP and SAM-IoU labels run "
                   "only when a weights file is given; nothing is downloaded.")
        c1, c2 = st.columns(2)
        clip_model = c1.text_input("CLIP model", "ViT-B-32", key="na_clip_model")
        clip_weights = c2.text_input("CLIP weights file or tag", key="na_clip_weights",
                                     placeholder="/models/clip-vit-b-32.pt")
        concepts = st.text_area("Spurious concepts for CLIP (one per line; blank = the default vocabulary)",
                                key="na_concepts", height=80)
        c1, c2 = st.columns(2)
        sam_type = c1.selectbox("SAM type", ["vit_b", "vit_l", "vit_h"], key="na_sam_type")
        sam_ckpt = c2.text_input("SAM checkpoint file", key="na_sam_ckpt", placeholder="/models/sam_vit_b_01ec64.pth")
    if st.button("Run the audit", type="primary", key="na_run_audit", icon=":material/play_arrow:"):
        def build() -> dict:
            cw = forms.check_weights(clip_weights, what="CLIP weights", tags=("openai", "laion2b_s34b_b79k"))
            if cw:
                forms.check_package("open_clip", what="CLIP labels")
            sc = str(forms.check_file(sam_ckpt, what="SAM checkpoint", suffixes=forms.WEIGHT_SUFFIXES)) \
                if sam_ckpt.strip() else None
            if sc:
                forms.check_package("segment_anything", what="SAM-IoU labels")
            texts = [t.strip() for t in concepts.splitlines() if t.strip()] or None
            cfg = forms.checked(AuditChainConfig, {"dataset": dataset, "model": model, "k": k, "eval_split": eval_split,
                                                   "clip_model": clip_model.strip() or "ViT-B-32", "clip_weights": cw,
                                                   "concepts": texts, "sam_type": sam_type, "sam_checkpoint": sc,
                                                   "device": device}, what="audit")
            return {f: getattr(cfg, f) for f in ("dataset", "model", "k", "eval_split", "clip_model", "clip_weights",
                                                 "concepts", "sam_type", "sam_checkpoint")}
        params = forms.attempt(build)
        if params is not None:
            launch(ws, "audit-chain", params, device=device)
            st.rerun()
    state = load_chain_state(ws, dataset, model)
    if state:
        st.caption("Steps of the last audit of this dataset and model (a rerun reuses the finished ones)")
        st.dataframe(_steps_table(state), hide_index=True, key="na_steps")
        failed = [s for s in state.get("steps", []) if s.get("status") == "failed"]
        for s in failed:
            st.error(f"Step '{s['step']}' failed: {s.get('error', '')}", icon=":material/error:")
    job_monitor(ws, recent_jobs(ws, "audit-chain", dataset=dataset, model=model, limit=1), key="na_audit_jobs")
    summary = load_summary(ws, dataset, model) if state and state.get("status") == "done" else None
    if summary and summary.get("next_steps"):
        st.info("Audit finished, but no feature is labelled spurious yet, so no class is ranked and there is no "
                "gap to show. Ways to get labels:\n\n" + "\n".join(f"- {md_escape(w)}" for w in summary["next_steps"]),
                icon=":material/info:")
    elif summary:
        st.success("Audit finished: label features on **Features**, browse **Rankings**, read **Gaps**.",
                   icon=":material/check_circle:")


def render() -> None:
    st.title("New audit")
    st.caption("Your own dataset and model, audited from the browser. Paths are read on the machine running "
               "the dashboard; long work runs as background jobs (they survive a page refresh).")
    ws = _workspace()
    if ws is None:
        return
    datasets = [d.name for d in ws.list_datasets()]
    if not datasets:
        _demo_block(ws)
    _dataset_section(ws)
    datasets = [d.name for d in ws.list_datasets()]
    st.divider()
    _model_section(ws, datasets)
    st.divider()
    _audit_section(ws, datasets)
    st.divider()
    st.caption("The same from a terminal: `python -m core dataset add`, `model train`, `audit` "
               f"(workspace {md_escape(shlex.quote(str(ws.root)))}).")


run_page(render)
