"""A prompt set made by a pipeline's own text encoders: what ``python -m solverbench encode-prompts`` runs.

The pipeline folder's ``model_index.json`` names its class; the pipeline is loaded without its
transformer and VAE (only the text encoders, tokenizers and scheduler), and its ``encode_prompt``
encodes the prompts in batches as its ``__call__`` would (its architecture's ``encode``), then the
negative prompt alone.  The text encoders come from ``transformers``, the optional ``prompts``
extra (``pip install "solverbench[prompts]"``).  Nothing is ever downloaded.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Optional

import torch

from backbones.diffusers_flow.architectures import BY_PIPELINE, Architecture
from backbones.diffusers_flow.folders import TRANSFORMER, VAE, quiet_diffusers, torch_dtype
from backbones.diffusers_flow.prompt_set import NEGATIVE_PREFIX, write_prompt_set
from solverbench.progress import progress_bar


class EncodingError(ValueError):
    """A pipeline folder, prompts file or setting that ``encode-prompts`` cannot encode from; one line says why."""


def read_prompts(path: str | Path) -> list[str]:
    """The prompts of a text file, one a line (surrounding spaces stripped, blank lines skipped)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise EncodingError(f"prompts file {str(path)!r}: " + ("a folder" if path.is_dir() else "no such file")
                            + "; give a text file with one prompt a line")
    try:
        prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as err:
        raise EncodingError(f"prompts file {str(path)!r} is not UTF-8 text ({err.reason} at byte {err.start})") \
            from None
    if not prompts:
        raise EncodingError(f"prompts file {str(path)!r} holds no prompt (one a line; blank lines are skipped)")
    return prompts


def pipeline_class(folder: str | Path) -> tuple[type, Architecture]:
    """The pipeline class a pipeline folder names (``model_index.json``) and the architecture it encodes prompts for;
    one line naming the folder where it is none whose ``encode_prompt`` the backbone's prompt sets follow."""
    import diffusers

    root = Path(folder).expanduser()
    index = root / "model_index.json"
    if not root.is_dir():
        raise EncodingError(f"pipeline folder {str(root)!r} " + ("is a file" if root.exists() else "does not exist")
                            + "; give a local folder written by a pipeline's save_pretrained (model_index.json, "
                              "text_encoder/, tokenizer/, ...)")
    if not index.is_file():
        raise EncodingError(f"pipeline folder {str(root)!r} has no model_index.json: give a whole pipeline's folder "
                            "(its text encoders and tokenizers), not one model's")
    try:
        name = json.loads(index.read_text()).get("_class_name")
    except (ValueError, AttributeError) as err:
        raise EncodingError(f"{str(index)!r} is not a pipeline index ({' '.join(str(err).split())})") from None
    supported = ", ".join(BY_PIPELINE)
    cls = getattr(diffusers, str(name), None)
    if not isinstance(cls, type) or not issubclass(cls, diffusers.DiffusionPipeline):
        raise EncodingError(f"pipeline folder {str(root)!r} names the pipeline class {name!r}, which diffusers "
                            f"{diffusers.__version__} does not have; encode-prompts runs {supported}")
    if not callable(getattr(cls, "encode_prompt", None)):
        raise EncodingError(f"pipeline folder {str(root)!r} holds a {name}, which has no encode_prompt (it takes no "
                            f"text prompts to encode); encode-prompts runs {supported}")
    if name not in BY_PIPELINE:
        raise EncodingError(f"pipeline folder {str(root)!r} holds a {name}, whose encode_prompt the diffusers "
                            f"backbone's prompt sets do not follow; encode-prompts runs {supported}")
    return cls, BY_PIPELINE[name]


def load_text_encoders(cls: type, folder: Path, dtype: torch.dtype, device: str) -> Any:
    """The pipeline with its text encoders, tokenizers and scheduler, without its transformer and VAE."""
    if importlib.util.find_spec("transformers") is None:
        raise EncodingError("encode-prompts runs the pipeline's text encoders, which need transformers: "
                            "pip install \"solverbench[prompts]\"")
    with quiet_diffusers():  # its notes on optional packages and on the components left out
        try:
            pipeline = cls.from_pretrained(str(folder), **{TRANSFORMER: None, VAE: None}, torch_dtype=dtype,
                                           local_files_only=True)
        except (OSError, ValueError, TypeError) as err:
            raise EncodingError(f"pipeline folder {str(folder)!r}: its {cls.__name__} does not load without its "
                                f"transformer and VAE: {' '.join(str(err).split())}") from None
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


@torch.no_grad()
def encode_prompts(folder: str | Path, prompts_file: str | Path, out: str | Path, *,
                   negative_prompt: Optional[str] = "", device: str = "cpu", dtype: str = "float32",
                   batch_size: int = 16, max_sequence_length: Optional[int] = None, progress: bool = True) -> str:
    """Write the prompt set of ``prompts_file`` (one prompt a line) encoded by the pipeline in ``folder`` to ``out``,
    with ``negative_prompt`` as its null label (None: no negative prompt); returns a summary line."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise EncodingError(f"batch size must be a whole number >= 1, got {batch_size!r}")
    if max_sequence_length is not None and max_sequence_length < 1:
        raise EncodingError(f"max sequence length must be a whole number >= 1, got {max_sequence_length!r}")
    cls, architecture = pipeline_class(folder)
    prompts = read_prompts(prompts_file)
    weights = torch_dtype(dtype)
    pipeline = load_text_encoders(cls, Path(folder).expanduser(), weights, device)
    batches = range(0, len(prompts), batch_size)
    parts: dict[str, list[torch.Tensor]] = {}
    bar = progress_bar(total=len(prompts), unit="prompt", enabled=progress, off_terminal="total",
                       desc=f"encode-prompts: {cls.__name__}'s text encoders")
    with bar:
        for start in batches:
            batch = prompts[start:start + batch_size]
            encoded, _ = architecture.encode(pipeline, batch, None, torch.device(device), max_sequence_length)
            for name, tensor in encoded.items():
                parts.setdefault(name, []).append(tensor.cpu())
            bar.update(len(batch))
        tensors = {name: torch.cat(chunks) for name, chunks in parts.items()}
        if negative_prompt is not None:
            _, negative = architecture.encode(pipeline, [negative_prompt], negative_prompt, torch.device(device),
                                              max_sequence_length)
            tensors.update({NEGATIVE_PREFIX + name: tensor.cpu() for name, tensor in negative.items()})
    extra = {} if max_sequence_length is None else {"max_sequence_length": int(max_sequence_length)}
    path = write_prompt_set(out, prompts, tensors, negative_prompt, pipeline=cls.__name__, dtype=dtype, **extra)
    shapes = ", ".join(f"{name} {tuple(tensor.shape)}" for name, tensor in tensors.items()
                       if not name.startswith(NEGATIVE_PREFIX))
    negative = "no negative prompt" if negative_prompt is None else f"the negative prompt {negative_prompt!r}"
    return f"wrote {path}: {len(prompts)} prompts and {negative}, encoded by {cls.__name__} ({shapes})"
