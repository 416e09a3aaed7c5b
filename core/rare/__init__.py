"""Rare spurious correlations (seed 003: Yang, Chou & Chaudhuri): how few patterned training images a
network needs to learn a pattern, what it costs in privacy, and what removes it.

Modules: `inject` (the seven patterns and the user's own patch), `score` (spurious score, Welch test),
`data` (built-in and workspace data), `sweep` (the resumable sweep), `canary` (the audit of a training
recipe), `stats` (per-cell statistics), `membership`, `unlearn` (incremental retraining, group
influence), `artifacts` (the workspace files and how to read them), `plots`, `preview`, `experiment`
(the original single experiment) and `jobs` (the job kinds ``rare-sweep`` / ``rare-canary``).
"""
