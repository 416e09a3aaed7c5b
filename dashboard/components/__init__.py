"""Reusable dashboard pieces: error guard, workspace/selection state, image grid, job monitor, charts."""
