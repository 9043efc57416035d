"""``SolverbenchScheduler``: a solverbench solver behind diffusers' scheduler interface, for a pipeline's own loop.

``pipe.scheduler = SolverbenchScheduler("flow-unipc", nfe=8, pipeline=pipe)`` and the pipeline's unchanged
``__call__`` samples with Flow-UniPC: ``set_timesteps`` makes the time grid and ``step(model_output, timestep,
sample)`` hands the solver the velocity the loop evaluated (guided as the loop guides it) and returns the latents the
loop evaluates next (``prev_sample``), or the result after the last step.  The solver is solverbench's, run by
``SteppedSolve`` on the loop's velocities: its state between steps (a multistep solver's earlier velocities) is
its own, the NFE is counted by its field, and the latents are ``solverbench.sample``'s with the same solver, NFE,
time grid and noise.  It runs the solvers that evaluate once per step at the step's time (euler, flow-dpm,
flow-unipc, ba).

The time grid: by default the one the pipeline's own scheduler would walk, FlowMatchEulerDiscreteScheduler's sigmas
for what the pipeline passes to ``set_timesteps`` (its steps, ``sigmas``, ``mu``), with the shift settings of this
scheduler's config (given, or ``pipeline``'s scheduler's); or a solverbench ``schedule`` for the pipeline's steps, or
a fixed ``time_grid``, either walked whatever ``sigmas`` and ``mu`` the pipeline passes (FluxPipeline passes its own
on every call).  Timesteps are ``1000 sigma``, as the flow pipelines expect.

A solver that prepares for its backbone (``ba``: its SideNet, conditioned on each prompt) is prepared at the first
step for the pipeline's transformer and the prompts of the call, which a hook on the transformer records
(``TransformerCalls``); so it needs ``pipeline``, and a loop without classifier-free guidance (the loop hands the
scheduler only the guided velocity, while the SideNet takes the conditional and unconditional ones apart:
``generate`` runs BA with guidance).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import torch
from diffusers.configuration_utils import ConfigMixin
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteSchedulerOutput

from backbones.diffusers_flow.architectures.flux import pack, unpack
from backbones.diffusers_flow.pipelines.backbone import PipelineBackbone, transformer_folder
from backbones.diffusers_flow.pipelines.solver_choice import check_scheduler_solver, pipeline_budget, pipeline_solver
from backbones.diffusers_flow.pipelines.stepping import LoopBackbone, Request, SteppedSolve
from backbones.diffusers_flow.pipelines.supported import PipelineError, pipeline_architecture
from backbones.diffusers_flow.pipelines.time_grid import FLOW_MATCH_SETTINGS, flow_match_grid, flow_match_settings
from backbones.diffusers_flow.pipelines.transformer_calls import TransformerCalls
from solverbench.plan import Plan, make_plan
from solverbench.sampling import SampleResult
from solverbench.solver import PrepareContext, Solver
from solverbench.timegrid import check_time_grid, make_time_grid

TRAIN_TIMESTEPS = 1000  # timestep = 1000 sigma, as the flow pipelines' schedulers make them


def unchanged(latents: torch.Tensor) -> torch.Tensor:
    """The latents as they are (the solver holds them as the loop does)."""
    return latents


class SolverbenchScheduler(ConfigMixin):
    """A solverbench solver with diffusers' scheduler interface (``set_timesteps``, ``step``, ``timesteps``,
    ``sigmas``, ``order``, ``init_noise_sigma``, ``scale_model_input``, ``set_begin_index``, ``config``).

    ``solver`` (euler, flow-dpm, flow-unipc or ba) with ``solver_params`` and, for ba, ``checkpoint`` (a SideNet
    file); ``nfe`` (None: the pipeline's ``num_inference_steps``); the grid's ``schedule`` or ``time_grid`` (None:
    the pipeline's); ``pipeline``, the pipeline it will run in (its scheduler's shift settings, and the prompts a
    solver such as ba conditions on); the shift settings themselves, FlowMatchEulerDiscreteScheduler's, override
    the pipeline's.  After the last step ``result`` holds the run's ``SampleResult``: the counted ``nfe``, the plan
    (``plan.times``, the grid walked), the solver's counters."""

    config_name = "scheduler_config.json"
    order = 1
    init_noise_sigma = 1.0

    def __init__(self, solver: str = "flow-unipc", nfe: Optional[int] = None, *, schedule: Optional[str | dict] = None,
                 time_grid: Any = None, checkpoint: Optional[str | Path] = None, pipeline: Any = None,
                 shift: Optional[float] = None, use_dynamic_shifting: Optional[bool] = None,
                 base_shift: Optional[float] = None, max_shift: Optional[float] = None,
                 base_image_seq_len: Optional[int] = None, max_image_seq_len: Optional[int] = None,
                 **solver_params: Any):
        self.solver = pipeline_solver(solver, checkpoint, solver_params)
        check_scheduler_solver(self.solver)
        self.budget = pipeline_budget(nfe)
        self.schedule, self.fixed_grid = schedule, self._checked_grid(schedule, time_grid)
        self.pipeline = pipeline
        self.architecture = None if pipeline is None else pipeline_architecture(pipeline)
        self.conditioned = type(self.solver).prepare is not Solver.prepare  # prepared for the prompts of each run
        if self.conditioned and pipeline is None:
            raise PipelineError(f"{solver} is prepared for the pipeline's transformer and the prompts of each call: "
                                f"give pipeline=pipe (SolverbenchScheduler({solver!r}, ..., pipeline=pipe))")
        if checkpoint is not None and transformer_folder(pipeline.transformer) is None:
            raise PipelineError(f"checkpoint=: the {type(pipeline).__name__}'s transformer was not loaded from a local "
                                "folder (from_pretrained), so no SideNet checkpoint can be checked against it")
        given = dict(shift=shift, use_dynamic_shifting=use_dynamic_shifting, base_shift=base_shift,
                     max_shift=max_shift, base_image_seq_len=base_image_seq_len, max_image_seq_len=max_image_seq_len)
        settings = flow_match_settings({} if pipeline is None else pipeline.scheduler.config)
        settings.update({key: value for key, value in given.items() if value is not None})
        self.register_to_config(num_train_timesteps=TRAIN_TIMESTEPS, **settings, solver=solver, nfe=self.budget,
                                schedule=schedule, time_grid=None if time_grid is None else self.fixed_grid.tolist(),
                                solver_params=dict(solver_params, **({} if checkpoint is None else
                                                                     {"checkpoint": str(checkpoint)})))
        self.plan: Optional[Plan] = None
        self.timesteps: Optional[torch.Tensor] = None
        self.sigmas: Optional[torch.Tensor] = None
        self.num_inference_steps: Optional[int] = None
        self.result: Optional[SampleResult] = None
        self._step_index: Optional[int] = None
        self._begin_index: Optional[int] = None
        self._run: Optional[SteppedSolve] = None
        self._calls: Optional[TransformerCalls] = None
        self._handed_out: Optional[torch.Tensor] = None
        self._run_dtype = torch.float32
        self._to_solver: Callable[[torch.Tensor], torch.Tensor] = unchanged
        self._to_loop: Callable[[torch.Tensor], torch.Tensor] = unchanged

    # -- diffusers' interface --------------------------------------------------------------------------------------

    @property
    def step_index(self) -> Optional[int]:
        return self._step_index

    @property
    def begin_index(self) -> Optional[int]:
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        if begin_index != 0:
            raise PipelineError(f"SolverbenchScheduler samples from t = 1: a begin index of {begin_index} (a loop that "
                                "starts part-way, as image-to-image does) is not supported")
        self._begin_index = 0

    def scale_model_input(self, sample: torch.Tensor, timestep: Any = None) -> torch.Tensor:
        return sample

    def set_timesteps(self, num_inference_steps: Optional[int] = None, device: Any = None, sigmas: Any = None,
                      mu: Optional[float] = None, timesteps: Any = None) -> None:
        """The run's time grid (the ``time_grid``, the ``schedule`` for the steps asked, or the pipeline's:
        FlowMatchEulerDiscreteScheduler's sigmas for these arguments), its ``timesteps`` (1000 t) and ``sigmas``."""
        self._end_run()
        steps = num_inference_steps if num_inference_steps is not None else \
            len(sigmas) if sigmas is not None else len(timesteps) if timesteps is not None else self.budget
        if self.fixed_grid is not None:
            grid = self.fixed_grid
        elif steps is None:
            raise PipelineError("set_timesteps needs num_inference_steps (or sigmas or timesteps)")
        elif self.schedule is not None:
            grid = make_time_grid(self.schedule, steps)
        else:
            settings = {key: self.config[key] for key in FLOW_MATCH_SETTINGS}
            grid = flow_match_grid(settings, num_inference_steps, sigmas, mu, timesteps)
        intervals = len(grid) - 1
        if self.budget is not None and self.budget != intervals:
            raise PipelineError(f"SolverbenchScheduler(nfe={self.budget}) was asked for {intervals} steps: call the "
                                f"pipeline with num_inference_steps={self.budget}")
        if steps is not None and steps != intervals:
            raise PipelineError(f"the scheduler's time_grid has {intervals} steps, the pipeline asked for {steps}: "
                                f"call the pipeline with num_inference_steps={intervals}")
        self.plan = make_plan(self.solver, nfe=intervals, times=grid)
        self.sigmas = grid.to(device=device or "cpu", dtype=torch.float32)
        self.timesteps = self.sigmas[:-1] * TRAIN_TIMESTEPS
        self.num_inference_steps = intervals
        self._step_index = self._begin_index = None
        self.result = None
        if self.conditioned:
            self._calls = TransformerCalls(self.pipeline.transformer, self.architecture)

    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, return_dict: bool = True) -> Any:
        """Hand the solver the velocity ``model_output`` the loop evaluated at ``sample`` and ``timestep``; the latents
        the loop evaluates next (after the last step: the solver's result), as ``prev_sample``."""
        if self.plan is None:
            raise PipelineError("call set_timesteps before step (a pipeline's __call__ does; a run that failed needs "
                                "it again)")
        index = self._step_index or 0
        if index >= self.num_inference_steps:
            raise PipelineError(f"all {self.num_inference_steps} steps were taken: call set_timesteps for another run")
        try:
            self._check_timestep(index, timestep)
            call = self._transformer_call(sample)
            if index == 0:
                self._start(sample, call)
            elif sample is not self._handed_out and not torch.equal(sample, self._handed_out):
                raise PipelineError("the latents given to step are not those the previous step returned (a callback "
                                    "or an inpainting loop changed them); the solver's state is its own and cannot "
                                    "continue from other latents")
            outcome = self._run.answer(self._to_solver(model_output).to(self._run_dtype))
            if isinstance(outcome, Request):
                self._check_request(outcome, index + 1)
                latents = self._to_loop(outcome.x)
            else:
                self.result, self._run = outcome, None
                self._end_run()
                latents = self._to_loop(outcome.samples)
        except BaseException:
            self._end_run()
            self.plan = None  # the run is over: set_timesteps starts another
            raise
        self._handed_out, self._step_index = latents, index + 1
        return FlowMatchEulerDiscreteSchedulerOutput(prev_sample=latents) if return_dict else (latents,)

    # -- the run ---------------------------------------------------------------------------------------------------

    def _start(self, sample: torch.Tensor, call: Any) -> None:
        """The run's solve from ``sample``: on the loop's velocities, prepared for the call's prompts where the solver
        conditions on them."""
        described, labels = None, None
        # the solver works on the latents as the loop holds them, but a SideNet sees Flux's unpacked
        self._to_solver, self._to_loop = unchanged, unchanged
        if self.conditioned and self.architecture.name == "flux":
            height, width = (2 * side for side in call.patches)
            self._to_solver, self._to_loop = (lambda z: unpack(z, height, width)), pack
        x = self._to_solver(sample)
        if self.conditioned:
            described = PipelineBackbone(self.pipeline, self.architecture, call.conditions, None, tuple(x.shape[2:]),
                                         call.guidance)
            labels = torch.arange(len(x), device=x.device)
        backbone = LoopBackbone(tuple(x.shape[1:]), described)
        if self.conditioned:
            try:
                self.solver.prepare(backbone, PrepareContext(device=str(x.device), progress=False))
            except ValueError as err:
                raise PipelineError(" ".join(str(err).split())) from None
        self._run_dtype = x.dtype
        self._run = SteppedSolve(self.solver, self.plan, backbone, labels, x)
        self._check_request(self._run.request, 0)

    def _transformer_call(self, sample: torch.Tensor) -> Any:
        """The step's transformer call, for a solver conditioned on the prompts: one call on the step's latents (a
        loop with classifier-free guidance makes a doubled batch, or two calls, and is refused)."""
        if not self.conditioned:
            return None
        count, calls = self._calls.take()
        if count != 1 or calls[-1].rows != len(sample):
            rows = " + ".join(str(c.rows) for c in calls) or "none"
            raise PipelineError(f"{self.solver.registered_name} in a pipeline's loop runs without classifier-free "
                                f"guidance (the loop hands the scheduler only the guided velocity, and its SideNet "
                                f"takes the conditional and unconditional ones apart), but the transformer ran "
                                f"{count} time(s) on {rows} rows for {len(sample)} latents: call the pipeline with "
                                "guidance_scale=1 (Flux: true_cfg_scale=1), or use generate(pipe, prompts, "
                                f"solver={self.solver.registered_name!r}, ...), which guides it")
        return calls[-1]

    def _check_timestep(self, index: int, timestep: Any) -> None:
        given = float(timestep.reshape(-1)[0]) if isinstance(timestep, torch.Tensor) else float(timestep)
        expected = float(self.timesteps[index])
        if abs(given - expected) > 1e-3:
            raise PipelineError(f"step {index} was given timestep {given:g}, the scheduler's step {index} is at "
                                f"{expected:g}: step through scheduler.timesteps in order")

    def _check_request(self, request: Any, index: int) -> None:
        """The solver evaluates at the loop's next timestep, as the solvers the scheduler runs do."""
        expected = float(self.sigmas[index])
        if not isinstance(request, Request) or abs(request.t - expected) > 1e-6:
            raise PipelineError(f"{self.solver.label()} does not evaluate at the grid's times (it asked for t = "
                                f"{getattr(request, 't', None)}, the loop's next is {expected:g})")

    def _end_run(self) -> None:
        if self._run is not None:
            self._run.stop()
            self._run = None
        if self._calls is not None:
            self._calls.remove()
            self._calls = None

    def _checked_grid(self, schedule: Any, time_grid: Any) -> Optional[torch.Tensor]:
        """The fixed grid (``time_grid``) checked against the budget, or ``schedule`` checked (one whose times are
        decided while the solver solves is refused: the loop needs them before its first step); None without a fixed
        grid."""
        if schedule is not None and time_grid is not None:
            raise PipelineError("give a schedule or a time_grid, not both")
        try:
            if time_grid is not None:
                grid = check_time_grid(time_grid)
                make_plan(self.solver, nfe=self.budget or len(grid) - 1, times=grid)
                return grid
            if schedule is not None and make_plan(self.solver, nfe=self.budget or 8, schedule=schedule).times is None:
                raise PipelineError(f"the schedule {schedule!r} decides its times while the solver solves, and a "
                                    "pipeline's loop needs them before its first step: give it to generate(...)")
            return None
        except (TypeError, ValueError) as err:
            raise PipelineError(" ".join(str(err).split())) from None
