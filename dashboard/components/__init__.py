"""Reusable dashboard pieces: `state` (session keys, sidebar, page context, `md_escape`), `guard` (error
policy), `class_nav` (the shared class selector), `image_grid`, `job_monitor`, `ranking_note`, `charts`."""
