"""Converts PP-OCRv6's small recognizer from the ONNX export in the rapidocr wheel to `PPOCRRecognizer` weights
(`modeling_lpllm/ppocr_recognizer.py`), for `lpllm train --vision_weights` (the encoder of `vision_encoder: ppocr`).

    pip install "lpllm[ppocr]"        # rapidocr (the ONNX file), onnx (to read it), onnxruntime (to check the result)
    lpllm convert-ppocr --output_path weights/ppocr_v6_small.safetensors

The ONNX graph computes the deployed network one operator at a time. Its weighted operators (convolutions with their
bias or batch norm, matrix products with their bias, layer norms spelled out as mean, variance and scale) are read in
the order the graph runs them and matched, by kind and shape, to the torch modules in the order a forward pass calls
them; every batch norm is folded into the convolution before it. The result is checked against onnxruntime on a
random image before it is written (`--verify false` to skip). The output holds the recognizer's `state_dict`
(`encoder.*` and the CTC `head.*`), with the character dictionary in its metadata (`characters`, one per line; class
`i + 1` of the head is character `i`, class 0 the blank and the last class the space), which `load_dictionary` reads.
"""

import hashlib
import importlib.util
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn
from transformers.utils import logging
from trl import TrlParser

from modeling_lpllm.ppocr_recognizer import PPOCRRecognizer, PPOCRRecognizerConfig


# The `ppocr` extra: onnx to read the graph, onnxruntime to check the conversion; `--help` works without them.
try:
    import onnx
    from onnx import numpy_helper
except ImportError:
    onnx = numpy_helper = None
try:
    import onnxruntime
except ImportError:
    onnxruntime = None

logger = logging.get_logger(__name__)

RAPIDOCR_RECOGNIZER = "models/PP-OCRv6_rec_small.onnx"
# The largest difference to onnxruntime's probabilities a conversion may show on its check image.
VERIFY_TOLERANCE = 1e-4


@dataclass
class ConvertArguments:
    """Arguments of `lpllm convert-ppocr`."""

    output_path: str | None = field(
        default=None,
        metadata={"help": "The .safetensors file to write (required; refused if it exists, unless --overwrite true)."},
    )
    onnx_path: str | None = field(
        default=None,
        metadata={"help": f"The recognizer's ONNX file. Default: {RAPIDOCR_RECOGNIZER} of the installed rapidocr."},
    )
    verify: bool = field(
        default=True,
        metadata={"help": "Compare the converted recognizer with onnxruntime on a random image before writing "
                          "(needs onnxruntime)."},
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing --output_path."})

    def __post_init__(self):
        if self.output_path is None:
            raise ValueError("--output_path is required: the .safetensors file to write.")
        if not self.output_path.endswith(".safetensors"):
            raise ValueError(f"--output_path must end in .safetensors, got {self.output_path!r}.")


@dataclass
class WeightedOperator:
    """One weighted step of the ONNX graph, in the torch module's layout.

    kind: "conv", "linear" or "layer_norm".
    tensors: weight and bias (torch layout: linear weights transposed, batch norms folded into conv weights).
    attributes: a convolution's stride, groups and padding, to check against the torch module.
    """

    name: str
    kind: str
    tensors: dict
    attributes: dict = field(default_factory=dict)


def rapidocr_recognizer_path() -> Path:
    """The recognizer's ONNX file inside the installed rapidocr package."""
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or spec.origin is None:
        raise ValueError(
            "rapidocr is not installed, and --onnx_path was not given: `pip install rapidocr` (it ships the "
            "recognizer), or pass the ONNX file."
        )
    path = Path(spec.origin).parent / RAPIDOCR_RECOGNIZER
    if not path.is_file():
        raise ValueError(f"The installed rapidocr has no {RAPIDOCR_RECOGNIZER} ({path}); pass --onnx_path.")
    return path


class OnnxGraph:
    """An ONNX graph with its Identity nodes looked through: who produces and who consumes each value."""

    def __init__(self, model: "onnx.ModelProto"):
        graph = model.graph
        self.initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
        self.alias = {}
        for node in graph.node:
            if node.op_type == "Identity":
                self.alias[node.output[0]] = node.input[0]
        self.nodes = [node for node in graph.node if node.op_type != "Identity"]
        self.consumers = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(self.resolve(name), []).append(node)
        self.producer = {self.resolve(output): node for node in self.nodes for output in node.output}

    def resolve(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    def constant(self, name: str) -> np.ndarray | None:
        return self.initializers.get(self.resolve(name))

    def only_consumer(self, node, op_type: str):
        """The single consumer of `node`'s output when it is an `op_type` node, else None."""
        consumers = self.consumers.get(self.resolve(node.output[0]), [])
        return consumers[0] if len(consumers) == 1 and consumers[0].op_type == op_type else None

    def constant_input(self, node) -> np.ndarray | None:
        """The one constant input of a binary node (Add, Mul), or None."""
        constants = [self.constant(name) for name in node.input if self.constant(name) is not None]
        return constants[0] if len(constants) == 1 else None


def _attributes(node) -> dict:
    return {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute}


def _conv(graph: OnnxGraph, node) -> WeightedOperator:
    weight = graph.constant(node.input[1]).astype(np.float32)
    attributes = _attributes(node)
    bias = graph.constant(node.input[2]) if len(node.input) > 2 else None
    following = graph.consumers.get(graph.resolve(node.output[0]), [])
    if bias is None and len(following) == 1 and following[0].op_type == "BatchNormalization":
        norm = following[0]
        scale, shift, mean, variance = (graph.constant(name) for name in norm.input[1:5])
        epsilon = _attributes(norm).get("epsilon", 1e-5)
        factor = scale / np.sqrt(variance + epsilon)
        weight = weight * factor[:, None, None, None]
        bias = shift - mean * factor
    elif bias is None and len(following) == 1 and following[0].op_type == "Add":
        bias = graph.constant_input(following[0])
        bias = None if bias is None else bias.reshape(-1)
    if bias is None or bias.shape != (weight.shape[0],):
        raise ValueError(f"Convolution {node.name}: expected a bias or a batch norm after it, found neither.")
    if attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"SAME_UPPER"):
        raise ValueError(f"Convolution {node.name}: auto_pad {attributes['auto_pad']!r} is not supported.")
    return WeightedOperator(
        name=node.name,
        kind="conv",
        tensors={"weight": torch.from_numpy(weight), "bias": torch.from_numpy(bias.astype(np.float32))},
        attributes={
            "stride": tuple(attributes.get("strides", (1, 1))),
            "groups": attributes.get("group", 1),
            "padding": tuple(attributes.get("pads", (0, 0, 0, 0))[:2]),
            "same_upper": attributes.get("auto_pad") == b"SAME_UPPER",
        },
    )


def _linear(graph: OnnxGraph, node) -> WeightedOperator:
    weight = graph.constant(node.input[1])
    add = graph.only_consumer(node, "Add")
    bias = None if add is None else graph.constant_input(add)
    if bias is None or bias.shape != (weight.shape[1],):
        raise ValueError(f"MatMul {node.name}: expected a bias added after it.")
    return WeightedOperator(
        name=node.name,
        kind="linear",
        tensors={"weight": torch.from_numpy(weight.T.copy()), "bias": torch.from_numpy(bias.copy())},
    )


def _layer_norm(graph: OnnxGraph, node) -> WeightedOperator:
    """The `(x - mean) / sqrt(var + eps) * gamma + beta` pattern ending at Div `node`, or None if it is another Div."""
    root = graph.producer.get(graph.resolve(node.input[1]))
    if root is None or root.op_type != "Sqrt":
        return None
    add_epsilon = graph.producer.get(graph.resolve(root.input[0]))
    multiply = graph.only_consumer(node, "Mul")
    add_shift = None if multiply is None else graph.only_consumer(multiply, "Add")
    if add_epsilon is None or add_shift is None:
        return None
    epsilon, scale, shift = (graph.constant_input(step) for step in (add_epsilon, multiply, add_shift))
    return WeightedOperator(
        name=node.name,
        kind="layer_norm",
        tensors={"weight": torch.from_numpy(scale.copy()), "bias": torch.from_numpy(shift.copy())},
        attributes={"eps": float(epsilon)},
    )


def weighted_operators(model: "onnx.ModelProto") -> list[WeightedOperator]:
    """The graph's weighted operators in the order it runs them."""
    graph = OnnxGraph(model)
    operators = []
    for node in graph.nodes:
        if node.op_type == "Conv":
            operators.append(_conv(graph, node))
        elif node.op_type == "MatMul" and graph.constant(node.input[1]) is not None:
            operators.append(_linear(graph, node))
        elif node.op_type == "Div":
            layer_norm = _layer_norm(graph, node)
            if layer_norm is not None:
                operators.append(layer_norm)
    return operators


def modules_in_call_order(recognizer: PPOCRRecognizer) -> list[tuple[str, nn.Module]]:
    """The recognizer's convolutions, linear layers and layer norms, in the order a forward pass calls them."""
    kinds = (nn.Conv2d, nn.Linear, nn.LayerNorm)
    names = {module: name for name, module in recognizer.named_modules() if isinstance(module, kinds)}
    order = []
    hooks = [module.register_forward_hook(lambda module, *_: order.append(module)) for module in names]
    try:
        with torch.no_grad():
            recognizer(torch.zeros(1, 3, recognizer.config.image_height, 32))
    finally:
        for hook in hooks:
            hook.remove()
    return [(names[module], module) for module in order]


def _check_match(operator: WeightedOperator, name: str, module: nn.Module) -> None:
    expected_kind = {nn.Conv2d: "conv", nn.Linear: "linear", nn.LayerNorm: "layer_norm"}[type(module)]
    problems = []
    if operator.kind != expected_kind:
        problems.append(f"a {operator.kind} where the module is a {expected_kind}")
    for key, tensor in operator.tensors.items():
        if getattr(module, key).shape != tensor.shape:
            problems.append(f"{key} of shape {tuple(tensor.shape)} for {tuple(getattr(module, key).shape)}")
    if expected_kind == "conv" and operator.kind == "conv":
        attributes = operator.attributes
        if attributes["stride"] != module.stride or attributes["groups"] != module.groups:
            problems.append(f"stride {attributes['stride']}, groups {attributes['groups']} for {module.stride}, "
                            f"{module.groups}")
        if not attributes["same_upper"] and attributes["padding"] != module.padding:
            problems.append(f"padding {attributes['padding']} for {module.padding}")
    if expected_kind == operator.kind == "layer_norm" and abs(operator.attributes["eps"] - module.eps) > 1e-9:
        problems.append(f"epsilon {operator.attributes['eps']} for {module.eps}")
    if problems:
        raise ValueError(f"ONNX operator {operator.name} does not match module {name}: {'; '.join(problems)}.")


def convert(onnx_path: str | os.PathLike) -> tuple[PPOCRRecognizer, list[str]]:
    """Returns the recognizer with the ONNX file's weights, and its character dictionary.

    Raises:
        ValueError: naming the file, when it cannot be read or its graph does not match the recognizer's layers.
    """
    if onnx is None:
        raise ValueError("Reading the ONNX file needs the onnx package: `pip install 'lpllm[ppocr]'`.")
    try:
        model = onnx.load(str(onnx_path))
    except Exception as error:  # onnx raises protobuf and OS errors alike
        raise ValueError(f"Cannot read the ONNX model {onnx_path}: {error}") from error
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    if "character" not in metadata:
        raise ValueError(f"{onnx_path}: no `character` dictionary in its metadata, which a PP-OCR recognizer has.")
    characters = metadata["character"].split("\n")
    recognizer = PPOCRRecognizer(PPOCRRecognizerConfig(vocab_size=len(characters) + 2))
    operators = weighted_operators(model)
    modules = modules_in_call_order(recognizer)
    if len(operators) != len(modules):
        raise ValueError(
            f"{onnx_path}: {len(operators)} weighted operators in the graph, {len(modules)} layers in the PP-OCRv6 "
            "small recognizer; is this that model?"
        )
    with torch.no_grad():
        for operator, (name, module) in zip(operators, modules):
            _check_match(operator, f"{name}", module)
            for key, tensor in operator.tensors.items():
                getattr(module, key).copy_(tensor)
    return recognizer.eval(), characters


def max_difference_to_onnxruntime(recognizer: PPOCRRecognizer, onnx_path, pixels: torch.Tensor) -> float:
    """The largest absolute difference between onnxruntime's output probabilities and the recognizer's softmax."""
    if onnxruntime is None:
        raise ValueError("Checking the conversion needs onnxruntime (`pip install onnxruntime`), or --verify false.")
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: pixels.numpy()})[0]
    with torch.no_grad():
        probabilities = recognizer(pixels).softmax(dim=-1).numpy()
    if probabilities.shape != expected.shape:
        raise ValueError(f"Output shapes differ: {probabilities.shape} (torch) and {expected.shape} (onnxruntime).")
    return float(np.abs(probabilities - expected).max())


def save_recognizer(recognizer: PPOCRRecognizer, characters: list[str], path, source: str = "") -> None:
    """Writes the recognizer's weights and dictionary to `path` (.safetensors), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "pt", "characters": "\n".join(characters), "source": source}
    state = {name: tensor.contiguous() for name, tensor in recognizer.state_dict().items()}
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        save_file(state, temporary, metadata=metadata)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def load_dictionary(path) -> list[str]:
    """The character dictionary `save_recognizer` wrote into `path`'s metadata, without the blank and the space.

    Raises:
        ValueError: naming `path`, when it is not a readable .safetensors file or holds no dictionary.
    """
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (OSError, SafetensorError) as error:
        raise ValueError(f"{path}: not a readable .safetensors file ({error}).") from error
    if "characters" not in metadata:
        raise ValueError(
            f"{path} has no character dictionary in its metadata (`characters`); write the file with `lpllm "
            "convert-ppocr`."
        )
    return metadata["characters"].split("\n")


def sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv=None):
    (args,) = TrlParser((ConvertArguments,)).parse_args_and_config(argv)
    onnx_path = Path(args.onnx_path) if args.onnx_path else rapidocr_recognizer_path()
    if not onnx_path.is_file():
        raise ValueError(f"--onnx_path {onnx_path}: no such file.")
    if os.path.exists(args.output_path) and not args.overwrite:
        raise ValueError(f"--output_path {args.output_path} exists; pass --overwrite true to replace it.")
    if args.verify and onnxruntime is None:
        raise ValueError("--verify needs onnxruntime (`pip install onnxruntime`); or pass --verify false.")
    recognizer, characters = convert(onnx_path)
    if args.verify:
        pixels = torch.rand(2, 3, recognizer.config.image_height, 160, generator=torch.Generator().manual_seed(0))
        difference = max_difference_to_onnxruntime(recognizer, onnx_path, pixels * 2 - 1)
        if difference > VERIFY_TOLERANCE:
            raise ValueError(
                f"The converted recognizer differs from onnxruntime by up to {difference:.2e} (tolerance "
                f"{VERIFY_TOLERANCE:g}); not written."
            )
        logger.warning(f"Checked against onnxruntime: probabilities within {difference:.2e}.")
    save_recognizer(recognizer, characters, args.output_path, source=f"{onnx_path.name} sha256:{sha256(onnx_path)}")
    parameters = sum(parameter.numel() for parameter in recognizer.parameters())
    logger.warning(
        f"Wrote {args.output_path}: {parameters:,} parameters ({len(characters)} characters in the dictionary)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
