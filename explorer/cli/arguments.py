"""Arguments several verbs share, and the argument types of the ``explorer`` command."""

from __future__ import annotations

import argparse


def model_args(sp) -> None:
    """The model and how to make it static: a zoo name or ONNX file, input shapes and frozen inputs."""
    sp.add_argument("model", help="a zoo model name (see `explorer models`) or the path of an .onnx file")
    sp.add_argument("--input-shape", action="append", metavar="NAME:D1,D2,...",
                    help="static shape of an input (repeatable); a symbolic batch dimension defaults to 1")
    sp.add_argument("--input-value", action="append", metavar="NAME=VALUE",
                    help="freeze an input to a constant (repeatable), e.g. sr=16000: what depends on it is "
                         "folded, and an If on it keeps one branch")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")


def calibration_arg(sp) -> None:
    """Where int8 calibration inputs come from."""
    sp.add_argument("--calibration", metavar="DIR",
                    help="int8 calibration inputs: .npy files, one sample each (a folder per input for models "
                         "with several); default: 4 seeded random samples")


def devices_arg(sp) -> None:
    """Tensor parallelism: the devices a decoder is split over."""
    sp.add_argument("--devices", type=positive_int, default=1, metavar="N",
                    help="decoders: split over N devices as Megatron-LM splits them (tensor parallelism); one "
                         "device's shard is lowered and scored, named NAME@tpN (default 1)")


def with_devices(model: str, devices: int) -> str:
    """The model's name for one device of ``devices`` (``NAME@tpN``)."""
    from models import tensor_parallel_name

    return tensor_parallel_name(model, devices)


def batches(text: str) -> list[int]:
    """A comma-separated list of batch sizes, each at least 1, without repeats."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"every batch must be at least 1, got {text!r}")
    return list(dict.fromkeys(values))


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """A number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value
