"""Accuracy per FLOP, pushed (issue 15, point 4): every SideNet training attempt, with what it cost and
the trajectory error it reached, written to a committed table.

    OMP_NUM_THREADS=1 python benchmarks/sidenet_attempts.py [--results results] [--only gmm64|digits]
        [--missing train|keep] [--names NAME [NAME ...]] [--out docs/benchmarks/sidenet_attempts.md]

``--out`` rewrites the tables and keeps the file's hand-written ``## Reading`` section; with ``--only`` it
keeps the other backbone's table as it is.  ``--missing keep`` does not train the SideNets missing from the
cache (hours on a CPU): their rows are copied from the ``--out`` file's earlier run, and the notes say which.
``--names`` measures the named attempts only, training their SideNets where not cached together with those of
the attempts they continue (also measured), and copies every other row from the ``--out`` file's earlier run:
one row rebuilt from a fresh clone, where ``--missing train`` would train every attempt of the table.

Each attempt is a set of SideNet settings (the keys of a grid's ``solver_settings: {ba: ...}``) or a
shipped checkpoint.  Its errors come from the engine: BA at NFE 5 and 10 in the setting of
configs/ba_gmm.yaml (gmm64, no guidance, 1024 samples, reference at 1e-9) or configs/digits.yaml
(digits, CFG 2, 500 samples, reference at 1e-5), with Euler at NFE 100 as the goal line.  A SideNet
that is not cached under RESULTS/.cache/sidenet/ is trained by the run (``python -m solverbench
train-sidenet ... `` with the same settings writes the same cache entry).  Training times are those
recorded in each checkpoint, on the machine and load it was trained under (see the notes).
"""
from __future__ import annotations

import argparse
import functools
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import solverbench as sb  # noqa: E402
from solverbench.backbone import resolve_backbone  # noqa: E402
from solverbench.engine import run_grid  # noqa: E402
from solverbench.grid import parse_grid  # noqa: E402
from solverbench.report.tables.model import format_number, format_with_interval  # noqa: E402
from solvers.ba.cache import cache_path  # noqa: E402
from solvers.ba.config import SideNetConfig  # noqa: E402

CHECKPOINTS = ROOT / "solvers" / "ba" / "checkpoints"
NFES = (5, 10)
GOAL_NFE = 100
LIGHT = {"width": 16, "depth": 2, "embed_dim": 16, "heads": 2}  # 6.7-7.2k parameters on digits: 1.2-1.3% of the U-Net
DIGITS_136K = {"width": 64}  # digits.pt's architecture: the defaults otherwise
FINE_TUNE = {"questions": "solves", "solve_bank": 512, "solve_guidance": 2.0, "questions_per_solve": 4, "lr": 2e-4,
             "iterations": 400}  # from a trained SideNet: guided solve questions at a tenth of the usual lr
# GPU-sized (benchmarks/gpu_sidenet_attempts.py sizes the iterations to a lent GPU's minutes): a bank of 4096 guided
# trajectories solved 1024 at a time, 1024 of them drawn an iteration
GPU_BANK = {"questions": "solves", "solve_bank": 4096, "batch_size": 1024, "solve_guidance": 2.0,
            "questions_per_solve": 4}
NFE10_SHIFTED = {"solve_nfe_min": 10, "solve_nfe_max": 10, "solve_shift": 0.5}  # one solve's questions: a ceiling
SHIFTED = {"name": "shifted", "shift": 0.5}
# LD3's grid learned through BA from the shifted one, at a fifth of its default lr
LD3_FROM_SHIFTED = {"name": "ld3", "init": SHIFTED, "lr": 0.01, "samples": 200, "validation": 100, "epochs": 15}
# the best general-purpose SideNet of the shifted grid: digits.pt fine-tuned 1200 iterations on the guided velocity
# of the shifted grids' questions
SHIFTED_GUIDED = {**DIGITS_136K, **FINE_TUNE, "solve_target": "guided", "solve_shift": 0.5, "iterations": 1200}
SETTINGS = {
    "gmm64": {"backbones": [{"name": "gmm", "params": {"preset": "gmm64"}}], "guidance": {"scale": 1.0},
              "num_samples": 1024, "batch_size": 1024, "reference": {"rtol": 1e-9, "atol": 1e-9}},
    "digits": {"backbones": ["digits"], "guidance": {"scale": 2.0}, "num_samples": 500, "batch_size": 500,
               "reference": {"rtol": 1e-5, "atol": 1e-5}},
}


@dataclass(frozen=True)
class Attempt:
    backbone: str  # a key of SETTINGS
    name: str
    why: str  # what the evidence said to try
    settings: dict = field(default_factory=dict)  # SideNet settings; the project's defaults for the rest
    checkpoint: Optional[str] = None  # a shipped file instead of settings
    schedule: Optional[str | dict] = None  # a learned time grid (ld3, gits) or a fixed one's spec ({name: shifted,
    # shift: s}) in place of the uniform one
    init: Optional[str] = None  # a shipped file the training starts from (init_from), or the name of an earlier
    # attempt of the same backbone whose trained SideNet (its cache entry under the results directory) it continues

    def params(self, results: str = "results") -> dict:
        """The ``ba`` solver's parameters: the shipped checkpoint, or the SideNet settings (``init_from`` resolved;
        an earlier attempt's SideNet is read from ``results``' cache)."""
        if self.checkpoint:
            return {"checkpoint": str(CHECKPOINTS / self.checkpoint)}
        if not self.init:
            return dict(self.settings)
        before = self.continues()
        if before is None:
            return {**self.settings, "init_from": str(CHECKPOINTS / self.init)}
        return {**self.settings, "init_from": str(before.sidenet_path(results))}

    def continues(self) -> Optional["Attempt"]:
        """The earlier attempt whose SideNet this one's training starts from (None: a shipped file, or no init)."""
        if not self.init or (CHECKPOINTS / self.init).is_file():
            return None
        before = next((a for a in ATTEMPTS if a.backbone == self.backbone and a.name == self.init), None)
        if before is None:
            raise ValueError(f"attempt {self.name!r}: init {self.init!r} is neither a file under {CHECKPOINTS} nor "
                             f"an attempt on {self.backbone}")
        return before

    def sidenet_path(self, results: str = "results", params: Optional[dict] = None) -> Path:
        """Where its trained SideNet is: the shipped file, or the cache entry a run trains for its backbone
        (``params``: its ``params(results)``, where the caller has them)."""
        if self.checkpoint:
            return CHECKPOINTS / self.checkpoint
        config = SideNetConfig.from_settings(params or self.params(results))
        return cache_path(Path(results).absolute() / ".cache", settings_backbone(self.backbone), config)

    def cached(self, results: str) -> bool:
        """Whether its SideNet is on disk (and, for one that continues an earlier attempt, that attempt's)."""
        params = self.params(results)
        start = params.get("init_from")
        return (start is None or Path(start).is_file()) and self.sidenet_path(results, params).is_file()


@functools.lru_cache(maxsize=None)
def settings_backbone(backbone: str):
    """The backbone the attempts of ``backbone`` (a key of SETTINGS) run on."""
    spec = SETTINGS[backbone]["backbones"][0]
    return resolve_backbone(spec) if isinstance(spec, str) else resolve_backbone(spec["name"], **spec["params"])


ATTEMPTS = (
    Attempt("gmm64", "project recipe (shipped gmm64.pt)", "the baseline: width 128, depth 3, gated head, 1200 "
            "iterations at batch 256, step rate 50, lr 1e-3 cosine", checkpoint="gmm64.pt"),
    Attempt("gmm64", "authors' recipe, 1200 iterations", "the authors' lr 1e-4 constant, EMA 0.9996, batch 168, "
            "at the project's iteration count", {"recipe": "official", "iterations": 1200}),
    Attempt("gmm64", "step rate 10", "at step rate 50 a chain step is 0.02 on average and one over 0.25 (an NFE-5 "
            "interval) has probability e^-12.5: the SideNet is asked at offsets it never saw", {"step_rate": 10.0}),
    Attempt("gmm64", "step rate 5", "steps of 0.2 on average: NFE-5 offsets are common", {"step_rate": 5.0}),
    Attempt("gmm64", "step rate 20", "between the two", {"step_rate": 20.0}),
    Attempt("gmm64", "4800 iterations", "longer training (the step law is not the limit: rates 5-20 do no better)",
            {"iterations": 4800}),
    Attempt("gmm64", "batch 1024", "four times the chains per iteration", {"batch_size": 1024}),
    Attempt("gmm64", "project recipe, seed 1", "the baseline again from another seed: how far two trainings of one "
            "recipe fall apart", {"seed": 1}),
    Attempt("gmm64", "chain length 16", "longer chains: a chain drifts twice as far on its own simulated steps",
            {"chain_length": 16}),
    Attempt("gmm64", "width 256", "capacity: twice the width, 4x the parameters", {"width": 256}),
    Attempt("gmm64", "exact chain steps", "distillation targets from the reference solver: each chain step ends on "
            "the backbone's own trajectory (an adaptive solve), not where the SideNet's quadrature puts it",
            {"chain_steps": "exact"}),
    Attempt("gmm64", "4800 iterations, seed 1", "a second seed of the 4800-iteration run, which did worse than 1200 "
            "at NFE 10", {"iterations": 4800, "seed": 1}),
    Attempt("gmm64", "chains from noise, 25%", "the NFE-5 error profile (sidenet_diagnosis.md): the first interval, "
            "from t = 1, makes 80% of it, and no chain starts at t = 1 (t ~ U(0, 1)); here a quarter of them do",
            {"noise_starts": 0.25}),
    Attempt("gmm64", "chains from noise, 50%", "half of them", {"noise_starts": 0.5}),
    Attempt("gmm64", "chains from noise, 25%, step rate 10", "the same with steps five times longer, so that the "
            "chains from noise cross the first interval's offsets (up to 0.2)", {"noise_starts": 0.25,
                                                                                 "step_rate": 10.0}),
    Attempt("gmm64", "chains from noise, 50%, 4800 iterations", "sidenet_ceiling.md: fitted to an NFE-5 solve's "
            "own questions, the same network needs thousands of iterations before its first interval improves",
            {"noise_starts": 0.5, "iterations": 4800}),
    Attempt("gmm64", "chains from noise, 50%, 4800 iterations, seed 1", "the same from another seed",
            {"noise_starts": 0.5, "iterations": 4800, "seed": 1}),
    Attempt("gmm64", "chains from noise, 75%, 4800 iterations", "three quarters of them",
            {"noise_starts": 0.75, "iterations": 4800}),
    Attempt("gmm64", "chains from noise, 50%, 4800 iterations, step rate 20", "the same with steps 2.5 times "
            "longer", {"noise_starts": 0.5, "iterations": 4800, "step_rate": 20.0}),
    Attempt("gmm64", "solve questions, 8 per trajectory", "sidenet_ceiling.md: regressed on the questions an "
            "NFE-5 solve asks, the network learns the first step; here as a training mode (questions: solves) for "
            "every NFE from 5 to 15, each exact trajectory answering 8 questions of one solve",
            {"questions": "solves", "questions_per_solve": 8, "iterations": 2400}),
    Attempt("gmm64", "solve questions", "the same with 32 questions per trajectory (the default)",
            {"questions": "solves", "iterations": 2400}),
    Attempt("gmm64", "solve questions, 4800 iterations", "twice the iterations: the loss was still falling",
            {"questions": "solves", "iterations": 4800}),
    Attempt("gmm64", "solve questions, 9600 iterations", "twice again: 2400 gave 0.023 and 4800 0.0136 at NFE 5, "
            "the loss still falling", {"questions": "solves", "iterations": 9600}),
    Attempt("gmm64", "solve questions at NFE 5 to 10 from a bank, 9600 iterations", "9600 iterations helped NFE 5 "
            "but not 10 and 15: NFE 5 drawn for one trajectory in 6 instead of 11, and the trajectories drawn from "
            "16384 solved once (solve_bank), which makes an iteration about four times cheaper",
            {"questions": "solves", "solve_nfe_max": 10, "solve_bank": 16384, "iterations": 9600}),
    Attempt("gmm64", "solve questions from a bank, 9600 iterations", "separates the two changes of the row above: "
            "the bank of 16384 at the usual NFE range 5 to 15",
            {"questions": "solves", "solve_bank": 16384, "iterations": 9600}),
    Attempt("gmm64", "solve questions, first interval weighted 4, 9600 iterations", "loss weighting by time: the "
            "first interval, from pure noise, still leaves most of the NFE-5 error (sidenet_diagnosis.md), and its "
            "4 questions are 7-21% of a solve's; weighted 4 (first_interval_weight), they carry about a third of "
            "the loss", {"questions": "solves", "first_interval_weight": 4.0, "iterations": 9600}),
    Attempt("gmm64", "shipped gmm64_solves.pt on a grid shifted 1.5", "not a training attempt: grids with shorter "
            "first steps halve the chain-trained SideNet's NFE-5 error (sidenet_diagnosis.md), and SD3's time shift "
            "at s = 1.5 takes the first step from 0.2 to 0.14; a SideNet trained on uniform grids' questions is "
            "asked others there", checkpoint="gmm64_solves.pt", schedule={"name": "shifted", "shift": 1.5}),
    Attempt("gmm64", "solve questions on grids shifted 1.5, from a bank of 65536, 9600 iterations", "so train on "
            "the shifted grids' questions (solve_shift) and sample on them; a bank of 65536, since the bank of "
            "16384 (three rows up) ended at a third of fresh solves' loss without lower errors, each trajectory "
            "drawn 150 times",
            {"questions": "solves", "solve_shift": 1.5, "solve_bank": 65536, "iterations": 9600},
            schedule={"name": "shifted", "shift": 1.5}),
    Attempt("gmm64", "solve questions at NFE 5 only, 4800 iterations", "the goal is at NFE 5: every question "
            "from its solve, as a learned time grid is fitted per NFE (the ceiling's regression as a training mode)",
            {"questions": "solves", "solve_nfe_min": 5, "solve_nfe_max": 5, "iterations": 4800}),
    Attempt("gmm64", "chains and solve questions", "the solve questions lose NFE 10 and 15 to the chains, which "
            "ask about small steps everywhere: both losses added (questions: both)",
            {"questions": "both", "iterations": 2400}),
    Attempt("gmm64", "shipped gmm64.pt on an LD3 grid", "not a training attempt: the profile says the first steps "
            "decide, and hand-picked grids with shorter first steps halve the error (sidenet_diagnosis.md); LD3 learns "
            "the grid through BA itself", checkpoint="gmm64.pt", schedule="ld3"),
    Attempt("gmm64", "shipped gmm64.pt on a GITS grid", "the same with GITS's grid (dynamic programming on "
            "local errors)", checkpoint="gmm64.pt", schedule="gits"),
    Attempt("digits", "136k SideNet (shipped digits.pt)", "the baseline: width 64, depth 3, gated head, 2400 "
            "iterations, step rate 50", checkpoint="digits.pt"),
    Attempt("digits", "light gated, 7k", "issue 15: a SideNet within 2% of the backbone's parameters (width 16, "
            "depth 2, embed 16, 2 heads), the shipped recipe otherwise", {**LIGHT, "iterations": 2400}),
    Attempt("digits", "light poly, 7k (shipped digits_light.pt)", "the same with the polynomial head: one trunk "
            "pass per anchor, half the gated head's FLOPs", checkpoint="digits_light.pt"),
    Attempt("digits", "light poly, 7k, guided solve questions from a bank", "on gmm64 the solves' own questions beat "
            "chains at every NFE; digits is sampled with CFG 2, so its trajectories are solved guided and each "
            "question is asked of both branches; exact float64 solves of the U-Net cost hundreds of evaluations, so "
            "512 trajectories are solved once (solve_bank) and drawn from; 4 questions per trajectory keep an "
            "iteration's SideNet work near a chain iteration's",
            {**LIGHT, "output_head": "poly", "poly_degree": 3, "iterations": 2400, "questions": "solves",
             "solve_bank": 512, "questions_per_solve": 4, "solve_guidance": 2.0}),
    Attempt("digits", "136k fine-tuned on guided solve questions, last interval weighted 8", "the NFE-10 error sits "
            "in the last interval, [0.1, 0], where BA returns the predictor alone (sidenet_diagnosis.md), and that "
            "interval solved exactly takes the 136k SideNet's error from 0.0116 to 0.0068 (last_interval_bound.md); "
            "so digits.pt, fine-tuned (init_from) on guided solve questions from a bank of 512, the last interval's "
            "3 questions (8% of an NFE-10 solve's) weighted 8 (last_interval_weight), lr 2e-4",
            {**DIGITS_136K, **FINE_TUNE, "last_interval_weight": 8.0}, init="digits.pt"),
    Attempt("digits", "136k fine-tuned on guided solve questions", "the same without the weighting: what the "
            "weight of 8 does", {**DIGITS_136K, **FINE_TUNE}, init="digits.pt"),
    Attempt("digits", "136k fine-tuned on the intervals' endpoint errors", "the fine-tuning above cut the last "
            "probe's end-node error, which the predictor weighs 1/12, and left the inner nodes (5/12 each) a little "
            "worse (last_interval_bound.md); so fit, per interval, the error of the state the scheme builds from "
            "the answers: the corrector's (f_a, g_b) on every interval but the last, the predictor's there, the "
            "answers' errors summed with the rule's weights (solve_loss: endpoints); 2 intervals per trajectory",
            {**DIGITS_136K, **FINE_TUNE, "questions_per_solve": 2, "solve_loss": "endpoints"}, init="digits.pt"),
    Attempt("digits", "shipped digits.pt on a grid shifted 0.5", "not a training attempt: the last interval, "
            "[0.1, 0], makes most of the NFE-10 error (last_interval_bound.md), and SD3's time shift at s = 0.5 "
            "halves it (to 0.053) and lengthens the first (0.1 to 0.18); s = 0.2-0.8 scanned on 200 samples "
            "(last_interval_bound.py --shift), 0.5 the best", checkpoint="digits.pt",
            schedule={"name": "shifted", "shift": 0.5}),
    Attempt("digits", "136k fine-tuned on guided solve questions, on a grid shifted 0.5", "the fine-tuned SideNet "
            "of the uniform grid's questions, on the shifted grid", {**DIGITS_136K, **FINE_TUNE}, init="digits.pt",
            schedule={"name": "shifted", "shift": 0.5}),
    Attempt("digits", "136k fine-tuned on the endpoint errors of grids shifted 0.5", "the two together: the "
            "endpoint fine-tuning on the shifted grids' intervals (solve_shift, a bank of their own), sampled on them",
            {**DIGITS_136K, **FINE_TUNE, "questions_per_solve": 2, "solve_loss": "endpoints", "solve_shift": 0.5},
            init="digits.pt", schedule={"name": "shifted", "shift": 0.5}),
    Attempt("digits", "136k fine-tuned on the guided velocity", "question_errors.md: at the first probe the "
            "GPU-trained SideNets halve the conditional answer's error and cut the unconditional's, yet their guided "
            "answer is worse than the SideNet off at the far nodes: their two errors are nearly uncorrelated "
            "(0.04-0.34), where the off errors are correlated (0.70-0.84) and cancel in u + 2 (c - u); so fit the "
            "guided answer the sampler uses (solve_target: guided), the 400-iteration fine-tuning otherwise",
            {**DIGITS_136K, **FINE_TUNE, "solve_target": "guided"}, init="digits.pt"),
    Attempt("digits", "136k fine-tuned on the guided velocity, on a grid shifted 0.5", "the same SideNet on the best "
            "grid", {**DIGITS_136K, **FINE_TUNE, "solve_target": "guided"}, init="digits.pt", schedule=SHIFTED),
    Attempt("digits", "136k fine-tuned on the guided velocity, 1200 iterations", "three times as long",
            {**DIGITS_136K, **FINE_TUNE, "solve_target": "guided", "iterations": 1200}, init="digits.pt"),
    Attempt("digits", "136k fine-tuned on the guided velocity of grids shifted 0.5", "trained on the questions of "
            "the grid it samples on (solve_shift: 0.5, a bank of 512 of its own)",
            {**DIGITS_136K, **FINE_TUNE, "solve_target": "guided", "solve_shift": 0.5}, init="digits.pt",
            schedule=SHIFTED),
    Attempt("digits", "136k fine-tuned on the guided velocity of grids shifted 0.5, 1200 iterations", "three "
            "times as long: the best general-purpose SideNet of the shifted grid",
            SHIFTED_GUIDED, init="digits.pt", schedule=SHIFTED),
    Attempt("digits", "136k fine-tuned on the guided velocity of one NFE-10 solve's questions, grid shifted 0.5 "
            "(ceiling)", "the ceilings above were fitted branch by branch; the guided target on the same 39 "
            "questions, at this CPU's scale (a bank of 512, batch 256, 1200 iterations) from digits.pt at the usual "
            "lr: how far a SideNet fitted to what decides NFE 10 gets with the target that helps",
            {**DIGITS_136K, **FINE_TUNE, **NFE10_SHIFTED, "solve_target": "guided", "lr": 1e-3, "iterations": 1200},
            init="digits.pt", schedule=SHIFTED),
    Attempt("digits", "136k fine-tuned on the endpoint errors of the guided answers", "the two that helped "
            "together: per interval, the state built from the guided answers u + 2 (c - u) (solve_loss: endpoints "
            "with solve_target: guided), the 400-iteration fine-tuning with 2 intervals per trajectory",
            {**DIGITS_136K, **FINE_TUNE, "questions_per_solve": 2, "solve_loss": "endpoints",
             "solve_target": "guided"}, init="digits.pt"),
    Attempt("digits", "136k fine-tuned on the endpoint errors of the guided answers, grids shifted 0.5", "the same "
            "on the shifted grids' intervals, sampled on them",
            {**DIGITS_136K, **FINE_TUNE, "questions_per_solve": 2, "solve_loss": "endpoints",
             "solve_target": "guided", "solve_shift": 0.5}, init="digits.pt", schedule=SHIFTED),
    Attempt("digits", "136k fine-tuned on guided solve questions, GPU bank of 4096", "longer training, larger "
            "batches: the fine-tunings above saw 512 trajectories and 400 iterations, and their losses fell on "
            "held-out trajectories as on the bank (question_errors.md); here 8 times the bank, 4 times the batch "
            "and as many iterations as a lent GPU's minutes allow",
            {**DIGITS_136K, **GPU_BANK, "lr": 2e-4, "iterations": 2400}, init="digits.pt"),
    Attempt("digits", "136k trained on guided solve questions from scratch, GPU bank of 4096", "the same "
            "without digits.pt's chain training to start from, at the usual lr",
            {**DIGITS_136K, **GPU_BANK, "iterations": 1700}),
    Attempt("digits", "136k fine-tuned on one NFE-10 solve's questions, grid shifted 0.5 (ceiling)", "can the "
            "136k network fit the questions that decide NFE 10 at all: only the 39 questions of the NFE-10 solve "
            "on the best grid (solve_nfe_min = solve_nfe_max = 10), from digits.pt at the usual lr",
            {**DIGITS_136K, **GPU_BANK, **NFE10_SHIFTED, "iterations": 1600}, init="digits.pt",
            schedule=SHIFTED),
    Attempt("digits", "136k fine-tuned on one NFE-10 solve's questions, last interval weighted 1/4, grid shifted 0.5",
            "the ceiling above leaves more than the goal in its first nine intervals, while the last probe's three "
            "questions have the largest errors (question_errors.md) and so the largest share of the loss; weighted "
            "1/4 (last_interval_weight: 0.25), the other 36 questions get more of the fit",
            {**DIGITS_136K, **GPU_BANK, **NFE10_SHIFTED, "last_interval_weight": 0.25, "iterations": 1600},
            init="digits.pt", schedule=SHIFTED),
    Attempt("digits", "width 128 on one NFE-10 solve's questions, grid shifted 0.5 (capacity ceiling)",
            "the same ceiling at twice the width (about four times the parameters), from scratch: whether "
            "capacity is the limit",
            {"width": 128, **GPU_BANK, **NFE10_SHIFTED, "iterations": 800}, schedule=SHIFTED),
    Attempt("digits", "the best shifted-grid SideNet, 1200 more iterations", "its loss was still falling when its "
            "cosine lr reached 0 (by 5% over its last 600 iterations): 1200 more from its weights, the same settings, "
            "the lr schedule started afresh", SHIFTED_GUIDED,
            init="136k fine-tuned on the guided velocity of grids shifted 0.5, 1200 iterations", schedule=SHIFTED),
    Attempt("digits", "the best shifted-grid SideNet on an LD3 grid", "not a training attempt: its per-interval "
            "profile on the 0.5 grid at NFE 10 (sidenet_diagnosis.py --digits-shift 0.5) leaves most of the error in "
            "the last interval (the predictor alone over [0.053, 0]) and the first three, little in the middle; LD3 "
            "learns the grid through BA from the 0.5 grid, per NFE, on 200 training trajectories (100 held out), "
            "at lr 0.01 (the default 0.05 made the held-out loss jump fourfold between epochs)", SHIFTED_GUIDED,
            init="digits.pt", schedule=LD3_FROM_SHIFTED),
    Attempt("digits", "the best shifted-grid SideNet, 1200 more iterations, on an LD3 grid", "the two above "
            "together: the longer training and LD3's grid", SHIFTED_GUIDED,
            init="136k fine-tuned on the guided velocity of grids shifted 0.5, 1200 iterations",
            schedule=LD3_FROM_SHIFTED),
    Attempt("digits", "the 2400-iteration shifted-grid SideNet, first interval weighted 4, 400 more iterations",
            "its profile (sidenet_diagnosis_shifted.md) puts what the SideNet gains over the scheme alone, and most of "
            "what it leaves, in the first three intervals and the last; on gmm64 weighting the first interval's "
            "questions 4 is what met the goal", {**SHIFTED_GUIDED, "first_interval_weight": 4.0, "iterations": 400},
            init="the best shifted-grid SideNet, 1200 more iterations", schedule=SHIFTED),
    Attempt("digits", "the 2400-iteration shifted-grid SideNet, last interval weighted 4, 400 more iterations",
            "with its last interval solved exactly it would leave 0.00608 ± 0.00065 at NFE 10, the goal "
            "(last_interval_bound_best.md); that interval, the predictor alone over [0.053, 0], leaves 0.0038 by "
            "itself, its quadrature with exact answers 0.00083: its three answers are the limit; so weight its "
            "questions 4 (last_interval_weight), 400 iterations as the first interval's weighting above",
            {**SHIFTED_GUIDED, "last_interval_weight": 4.0, "iterations": 400},
            init="the best shifted-grid SideNet, 1200 more iterations", schedule=SHIFTED),
    Attempt("digits", "the 2400-iteration shifted-grid SideNet, last interval weighted 16, 400 more iterations",
            "the same at 16: the last interval's questions then carry most of the loss",
            {**SHIFTED_GUIDED, "last_interval_weight": 16.0, "iterations": 400},
            init="the best shifted-grid SideNet, 1200 more iterations", schedule=SHIFTED),
    Attempt("digits", "the 2400-iteration shifted-grid SideNet, 2400 more iterations", "each doubling of its "
            "training has cut NFE 10 by about 0.0003 (0.00796 at 400 iterations, 0.00760 at 1200, 0.00737 at 2400), "
            "and every fine-tuned SideNet's held-out loss equals its training loss (question_errors.md): the fit, "
            "not the data, is short; one more doubling, 2400 more from its weights, the lr schedule afresh",
            {**SHIFTED_GUIDED, "iterations": 2400},
            init="the best shifted-grid SideNet, 1200 more iterations", schedule=SHIFTED),
    Attempt("digits", "the 2400-iteration shifted-grid SideNet, 1200 more iterations at lr 6e-4", "if the fit is "
            "slow because the fine-tuning's lr is small (2e-4, a fifth of training's 1e-3), three times the lr gains "
            "more per iteration", {**SHIFTED_GUIDED, "lr": 6e-4},
            init="the best shifted-grid SideNet, 1200 more iterations", schedule=SHIFTED),
    Attempt("digits", "the 2400-iteration shifted-grid SideNet, 1200 more iterations at lr 2e-3", "at lr 6e-4 the "
            "loss ended 17% below lr 2e-4's (0.0045 against 0.0054) and NFE 10 moved by 2%: ten times the fine-tuning "
            "lr, twice training's", {**SHIFTED_GUIDED, "lr": 2e-3},
            init="the best shifted-grid SideNet, 1200 more iterations", schedule=SHIFTED),
    Attempt("digits", "the 4800-iteration shifted-grid SideNet, 800 more on one NFE-10 solve's questions", "the "
            "loss weighs the questions of NFE 5 to 15 alike and stopped telling how NFE 10 does: the best SideNet "
            "fitted on the 39 questions of the NFE-10 solve alone (solve_nfe_min = solve_nfe_max = 10), a ceiling "
            "for that one budget from the best start",
            {**SHIFTED_GUIDED, **NFE10_SHIFTED, "iterations": 800},
            init="the 2400-iteration shifted-grid SideNet, 2400 more iterations", schedule=SHIFTED),
)


def entry(attempt: Attempt, results: str) -> dict:
    spec = {"name": attempt.schedule} if isinstance(attempt.schedule, str) else attempt.schedule
    return {"name": "ba", "params": attempt.params(results), **({"schedule": spec} if spec else {})}


def measure(backbone: str, attempts: list[Attempt], results: str) -> tuple[dict, dict]:
    """Per attempt: {nfe: row}; and Euler's goal row at NFE 100."""
    raw = {**SETTINGS[backbone], "name": f"sidenet_attempts_{backbone}", "schedule": "uniform", "seeds": [0],
           "nfe": list(NFES), "metrics": ["trajectory_error"], "save_samples": 0, "device": "cpu", "dtype": "float32"}
    for stage in stages(attempts):  # an attempt that continues another is parsed (its init_from checked) after it
        raw["solvers"] = [entry(a, results) for a in stage] + [{"name": "euler", "nfe": [GOAL_NFE]}]
        grid = parse_grid(raw, path=ROOT / "configs" / f"{raw['name']}.yaml")
        rows = run_grid(grid, results, progress=True).frame  # all of its cells: other scripts run subsets of this grid
    rows = rows[(rows["grid"] == grid.name) & (rows["status"] == "ok")]
    out = {}
    for attempt in attempts:
        mine = rows[(rows["solver_label"] == sb.get_solver("ba", **attempt.params(results)).label())
                    & rows["schedule"].map(lambda recorded: same_schedule(recorded, attempt.schedule))]
        out[attempt.name] = {int(r["nfe"]): r for _, r in mine.iterrows()}
    goal = rows[(rows["solver"] == "euler") & (rows["nfe"] == GOAL_NFE)].iloc[0]
    return out, goal


def stages(attempts: list[Attempt]) -> list[list[Attempt]]:
    """``attempts`` in the order they can be trained: first those that start from a shipped file or from scratch,
    then those that continue one of them, and so on (always at least one stage, for the goal's row)."""
    def depth(attempt: Attempt) -> int:
        before = attempt.continues()
        return 0 if before is None else 1 + depth(before)
    depths = [depth(a) for a in attempts]
    return [[a for a, d in zip(attempts, depths) if d == k] for k in range(max(depths, default=0) + 1)]


def same_schedule(recorded: str, wanted: Optional[str | dict]) -> bool:
    """Whether a row's schedule (JSON: a name, or a spec with one) is the attempt's: uniform where it names none,
    a learned one by name, a fixed one's spec whole."""
    value = json.loads(recorded)
    if isinstance(wanted, dict):
        return value == wanted
    return (value if isinstance(value, str) else value["name"]) == (wanted or "uniform")


def error(row) -> str:
    return format_with_interval(row["trajectory_error"], row["trajectory_error_ci_low"], row["trajectory_error_ci_high"])


def table(backbone: str, attempts: list[Attempt], measured: dict, goal, kept: Optional[dict] = None,
          named: bool = False) -> str:
    """The backbone's section; ``kept``: rows copied whole from an earlier run, by attempt name (``named``: the
    others were picked by ``--names``, and the note names those instead)."""
    kept = kept or {}
    lines = [f"### {backbone}: goal, Euler at NFE {GOAL_NFE}: {error(goal)}", "",
             "| attempt | settings | training (s) | parameters | NFE 5 | NFE 10 | why |", "|---|---|--:|--:|--:|--:|---|"]
    for attempt in attempts:
        if attempt.name in kept:
            lines.append(kept[attempt.name])
            continue
        rows = measured[attempt.name]
        first = next(iter(rows.values()), None)
        seconds = "?" if first is None else format_number(first["train_seconds"], 3)
        params = "?" if first is None else f"{int(first['trainable_params']):,}"
        setting = ", ".join(f"{k}={v}" for k, v in attempt.settings.items()) or f"checkpoint {attempt.checkpoint}"
        if attempt.init:
            setting = f"from {attempt.init}, " + setting
        if isinstance(attempt.schedule, dict):
            setting += ", sampled on time grid " + ", ".join(f"{k}={v}" for k, v in attempt.schedule.items())
        elif attempt.schedule:
            setting += f", time grid {attempt.schedule} (learned per NFE through BA)"
        cells = [error(rows[n]) if n in rows else "–" for n in NFES]
        lines.append(f"| {attempt.name} | {setting} | {seconds} | {params} | {' | '.join(cells)} | {attempt.why} |")
    if kept:
        if named:
            lines += ["", "Measured by this run (`--names` and the attempts they continue): " + "; ".join(
                a.name for a in attempts if a.name not in kept) + ". Every other row is kept from the earlier run "
                      "of this file."]
        else:
            lines += ["", "Kept from the earlier run of this file, their SideNets not in this run's cache (`--missing "
                      "keep`): " + "; ".join(name for name in kept) + "."]
    return "\n".join(lines)


def earlier_sections(text: str) -> dict[str, str]:
    """An earlier output's sections by backbone: from its ``### backbone:`` heading to the next heading or the
    notes."""
    sections = {}
    for chunk in text.split("\n### ")[1:]:
        body = "### " + chunk.split("\n\nErrors: ")[0].split("\n\n## ")[0].rstrip()
        sections[chunk.split(":")[0]] = body
    return sections


def earlier_rows(section: str) -> dict[str, str]:
    """The table rows of an earlier section, by attempt name."""
    return {line[2:].split(" | ")[0]: line for line in section.splitlines()
            if line.startswith("| ") and not line.startswith(("| attempt |", "|---"))}


NOTES = """Errors: trajectory error at NFE 5 and 10 ± half the 95% interval, one seed (gmm64: 1024 samples,
no guidance, reference at 1e-9; digits: 500 samples, CFG 2, reference at 1e-5). Training time:
what each checkpoint recorded, on one CPU thread of the 2-core machine with other jobs beside it
(the 136k digits SideNet on one H100, its README says; the rows with a bank of 4096 at batch 1024 on
one H200, four trainings side by side, gpu_sidenet_attempts.py), with the training it started from
and the solving of its bank; a learned time grid's own learning is not counted in it."""
READING = "\n## Reading"  # a hand-written section of the output file, kept when the tables are rewritten


def write(path: Path, command: str, text: str, remark: str = "") -> None:
    """The tables and notes (``remark``: a paragraph after the command), followed by the ``## Reading`` section the
    file already has, if any."""
    old = path.read_text() if path.is_file() else ""
    reading = old[old.index(READING):] if READING in old else ""
    path.write_text(f"# SideNet training attempts: accuracy per FLOP\n\nProduced by\n\n    {command.strip()}\n\n"
                    + (f"{remark}\n\n" if remark else "") + f"{text}\n\n{NOTES}\n{reading}")


def keep_plan(earlier: dict[str, str], results: str, only: str | None) -> tuple[dict[str, dict[str, str]], list[str]]:
    """``--missing keep``: per backbone, the earlier rows kept for the attempts whose SideNet is not cached; and the
    attempts that are neither cached nor in the earlier file, which a run would have to train."""
    kept, missing = {}, []
    for backbone in SETTINGS:
        if only and backbone != only:
            continue
        rows = earlier_rows(earlier.get(backbone, ""))
        uncached = [a.name for a in ATTEMPTS if a.backbone == backbone and not a.cached(results)]
        kept[backbone] = {name: rows[name] for name in uncached if name in rows}
        missing += [name for name in uncached if name not in rows]
    return kept, missing


def attempts_named(names: list[str], attempts: Sequence[Attempt] = ()) -> list[Attempt]:
    """The attempts called ``names`` (among ``attempts``, by default the table's), in that order; a ValueError names
    the first that is not one."""
    by_name = {a.name: a for a in attempts or ATTEMPTS}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ValueError(f"no attempt named {unknown[0]!r} in sidenet_attempts.py")
    return [by_name[name] for name in names]


def named_plan(earlier: dict[str, str], names: list[str]) -> tuple[dict[str, dict[str, str]], list[str]]:
    """``--names``: per backbone of a named attempt, the earlier rows kept for the attempts neither named nor
    continued by a named one (those are measured); and the kept ones that have no earlier row."""
    chosen = attempts_named(names)
    measured = set()
    for attempt in chosen:
        while attempt is not None:
            measured.add(attempt.name)
            attempt = attempt.continues()
    kept, missing = {}, []
    for backbone in dict.fromkeys(a.backbone for a in chosen):
        rows = earlier_rows(earlier.get(backbone, ""))
        others = [a.name for a in ATTEMPTS if a.backbone == backbone and a.name not in measured]
        kept[backbone] = {name: rows[name] for name in others if name in rows}
        missing += [name for name in others if name not in rows]
    return kept, missing


def unmeasurable(earlier: dict[str, str], results: str, only: str | None) -> list[str]:
    """The attempts ``--missing keep`` could neither measure (their SideNet not cached) nor copy (no row in the
    earlier file): a run would have to train them."""
    return keep_plan(earlier, results, only)[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="results")
    parser.add_argument("--only", choices=sorted(SETTINGS), default=None)
    parser.add_argument("--missing", choices=("train", "keep"), default="train",
                        help="SideNets not in the cache: train them (default), or keep their rows from --out's file")
    parser.add_argument("--names", nargs="+", default=None, metavar="NAME",
                        help="measure these attempts only (and those they continue), keeping every other row from "
                        "--out's file")
    parser.add_argument("--out", default=None, help="also write the Markdown here")
    args = parser.parse_args(argv)
    if args.missing == "keep" and not args.out:
        parser.error("--missing keep copies rows from the --out file's earlier run: give --out")
    if args.names and (args.only or args.missing == "keep" or not args.out):
        parser.error("--names picks its backbones and keeps every other row from the --out file's earlier run: give "
                     "--out, and neither --only nor --missing keep")
    earlier = earlier_sections(Path(args.out).read_text()) if args.out and Path(args.out).is_file() else {}
    if args.names:
        try:
            kept_by, untrained = named_plan(earlier, args.names)
        except ValueError as exc:
            parser.error(str(exc))
        if untrained:
            parser.error(f"--names: {'; '.join(untrained)}: not named and no row in {args.out} to keep")
        backbones = list(kept_by)
    else:
        kept_by, untrained = keep_plan(earlier, args.results, args.only) if args.missing == "keep" else ({}, [])
        if untrained:
            parser.error(f"--missing keep: {'; '.join(untrained)}: not cached and no row in {args.out}; train them "
                         "first (python -m solverbench train-sidenet with their settings writes the cache entry) or "
                         "run with --names or --missing train")
        backbones = [args.only] if args.only else list(SETTINGS)
    parts = []
    for backbone in SETTINGS:
        if backbone not in backbones:
            if backbone in earlier:
                parts.append(earlier[backbone])  # as it was
            continue
        attempts = [a for a in ATTEMPTS if a.backbone == backbone]
        kept = kept_by.get(backbone, {})
        measured, goal = measure(backbone, [a for a in attempts if a.name not in kept], args.results)
        parts.append(table(backbone, attempts, measured, goal, kept, named=bool(args.names)))
    text = "\n\n".join(parts)
    print(text)
    if args.out:
        command = "OMP_NUM_THREADS=1 python benchmarks/sidenet_attempts.py " + shlex.join(argv or sys.argv[1:])
        kept = [b for b in SETTINGS if b not in backbones and b in earlier]
        remark = (f"The {', '.join(kept)} table is the one this file held before (this run measured "
                  f"{', '.join(backbones)} only).") if kept else ""
        write(Path(args.out), command, text, remark)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
