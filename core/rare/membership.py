"""Membership inference: are rare spurious examples easier to identify as training members?

A shadow model is trained on data the attacker controls (``shadow_in``) and evaluated on data it never
saw (``shadow_out``); an attack classifier learns member vs non-member from per-sample features =
softmax probabilities sorted in decreasing order + a correctness bit. It is then applied to the target
model's outputs on its true members and on true non-members (held-out samples the target never
trained on — the reference notebook built both sides from training predictions, which measures
nothing).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from core.errors import SpurAuditError


def attack_features(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N, K + 1): probabilities sorted high to low, then 1.0 where argmax == label."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise SpurAuditError(f"probs must be (N, K) with N = len(labels); got {probs.shape}, {len(labels)}")
    correct = (probs.argmax(1) == labels).astype(np.float64)[:, None]
    return np.hstack([-np.sort(-probs, axis=1), correct])


@dataclass
class MembershipResult:
    """Attack accuracy on the target model (0.5 = chance), overall and on subgroups of members.

    ``member_accuracy[g]``: fraction of group g's members flagged as members. ``member_auroc[g]``: AUROC
    of the attack score separating group g's members from all true non-members (0.5 = chance; NaN for
    an empty group).
    """

    accuracy: float
    auroc: float
    member_accuracy: dict[str, float]
    best_c: float
    member_auroc: dict[str, float] = field(default_factory=dict)


def fit_attack(shadow_in: tuple[np.ndarray, np.ndarray], shadow_out: tuple[np.ndarray, np.ndarray], *,
               seed: int = 0) -> LogisticRegression:
    """The attack classifier (logistic regression, C chosen by 3-fold CV) trained on the shadow model's
    (probs (N, K), labels (N,)) on its members (label 1) and non-members (label 0)."""
    xs = np.vstack([attack_features(*shadow_in), attack_features(*shadow_out)])
    ys = np.r_[np.ones(len(shadow_in[1])), np.zeros(len(shadow_out[1]))]
    if len(np.unique(ys)) < 2:
        raise SpurAuditError("the shadow model needs both members and non-members")
    search = GridSearchCV(LogisticRegression(max_iter=2000), {"C": [0.01, 0.1, 1.0, 10.0]},
                          cv=StratifiedKFold(3, shuffle=True, random_state=seed))
    search.fit(xs, ys)
    return search.best_estimator_


def evaluate_attack(attack: LogisticRegression, target_in: tuple[np.ndarray, np.ndarray],
                    target_out: tuple[np.ndarray, np.ndarray], *,
                    member_groups: dict[str, np.ndarray] | None = None) -> MembershipResult:
    """Apply a fitted attack to the target model's (probs, labels) on true members / true non-members."""
    f_in, f_out = attack_features(*target_in), attack_features(*target_out)
    xt = np.vstack([f_in, f_out])
    yt = np.r_[np.ones(len(f_in)), np.zeros(len(f_out))]
    scores = attack.predict_proba(xt)[:, 1]
    pred_in = attack.predict(f_in)
    s_in, s_out = scores[:len(f_in)], scores[len(f_in):]
    groups, aurocs = {}, {}
    for name, mask in (member_groups or {}).items():
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (len(f_in),):
            raise SpurAuditError(f"member group {name!r} must be a bool mask over the {len(f_in)} target members")
        groups[name] = float(pred_in[mask].mean()) if mask.any() else float("nan")
        if mask.any() and len(s_out):
            aurocs[name] = float(roc_auc_score(np.r_[np.ones(int(mask.sum())), np.zeros(len(s_out))],
                                               np.r_[s_in[mask], s_out]))
        else:
            aurocs[name] = float("nan")
    return MembershipResult(accuracy=float((attack.predict(xt) == yt).mean()), auroc=float(roc_auc_score(yt, scores)),
                            member_accuracy=groups, best_c=float(attack.C), member_auroc=aurocs)


def membership_attack(shadow_in: tuple[np.ndarray, np.ndarray], shadow_out: tuple[np.ndarray, np.ndarray],
                      target_in: tuple[np.ndarray, np.ndarray], target_out: tuple[np.ndarray, np.ndarray], *,
                      member_groups: dict[str, np.ndarray] | None = None, seed: int = 0) -> MembershipResult:
    """Train the attack on the shadow model's (probs, labels) and evaluate it on the target model's.

    Args:
        shadow_in/shadow_out: (probs (N, K), labels (N,)) of the shadow model on its members / non-members.
        target_in/target_out: the same for the target model (true members / true non-members).
        member_groups: name -> bool mask over ``target_in`` rows (e.g. ``{"spurious": ..., "clean": ...}``);
            the result gives the fraction of each group flagged as member and the group's AUROC against
            the non-members.
    """
    attack = fit_attack(shadow_in, shadow_out, seed=seed)
    return evaluate_attack(attack, target_in, target_out, member_groups=member_groups)
