"""PP-OCRv6 small's recognizer in torch (`modeling_lpllm/ppocr_recognizer.py`) and its converter from the ONNX file in
the rapidocr wheel (`lpllm convert-ppocr`): shapes and decoding on random weights always; equality with onnxruntime
and with RapidOCR's own readings of real crops where rapidocr, onnx and onnxruntime are installed (`lpllm[ppocr]`)."""

import csv
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from modeling_lpllm.ppocr_recognizer import PPOCRRecognizer, PPOCRRecognizerConfig, ctc_greedy_decode


REALTRAIN = Path(__file__).resolve().parents[2] / "shared" / "realtrain"
MISSING = [name for name in ("rapidocr", "onnx", "onnxruntime", "cv2") if importlib.util.find_spec(name) is None]
needs_rapidocr = pytest.mark.skipif(
    bool(MISSING), reason=f"needs the ppocr extra (`pip install 'lpllm[ppocr]'`); missing: {', '.join(MISSING)}"
)


class TestRandomWeights:
    def test_one_position_per_8_pixels_of_width_and_one_logit_per_class(self):
        recognizer = PPOCRRecognizer(PPOCRRecognizerConfig(vocab_size=12)).eval()
        with torch.no_grad():
            logits = recognizer(torch.rand(2, 3, 48, 96) * 2 - 1)
        assert logits.shape == (2, 12, 12)
        assert torch.isfinite(logits).all()

    def test_gradients_reach_every_parameter(self):
        recognizer = PPOCRRecognizer(PPOCRRecognizerConfig(vocab_size=12))
        recognizer(torch.rand(1, 3, 48, 32)).logsumexp(-1).sum().backward()
        for name, parameter in recognizer.named_parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name

    @pytest.mark.parametrize("shape", [(1, 3, 32, 64), (1, 1, 48, 64), (3, 48, 64), (1, 3, 48, 4)])
    def test_images_of_another_height_or_layout_are_refused(self, shape):
        with pytest.raises(ValueError, match="PP-OCR encoder"):
            PPOCRRecognizer(PPOCRRecognizerConfig(vocab_size=12))(torch.zeros(shape))

    def test_greedy_decoding_merges_repeats_and_drops_blanks(self):
        characters = list("AB1")  # classes: blank, A, B, 1, space
        best_paths = [[1, 1, 0, 1, 2, 2, 4, 3], [0, 0, 0, 0, 0, 0, 0, 0]]
        logits = torch.nn.functional.one_hot(torch.tensor(best_paths), num_classes=5).float()
        assert ctc_greedy_decode(logits, characters) == ["AAB 1", ""]
        with pytest.raises(ValueError, match="classes"):
            ctc_greedy_decode(logits, list("AB"))


def real_crops(count: int):
    """`count` labelled crops from realtrain's sets, as BGR uint8 arrays (what RapidOCR reads) with their labels."""
    import cv2

    crops = []
    for name in ("taiwan_tw", "uzbekistan_uz"):
        with open(REALTRAIN / name / "labels.csv", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))[: count // 2]
        crops += [(cv2.imread(str(REALTRAIN / name / row["file"])), row["text"]) for row in rows]
    return crops


def rapidocr_batch(images: list[np.ndarray]) -> torch.Tensor:
    """RapidOCR's recognizer input for `images`: height 48, aspect ratio kept, padded on the right to the widest (at
    least 320), `(pixel / 255 - 0.5) / 0.5`."""
    import cv2

    widths = [int(np.ceil(48 * image.shape[1] / image.shape[0])) for image in images]
    batch = np.zeros((len(images), 3, 48, max(320, *widths)), dtype=np.float32)
    for index, (image, width) in enumerate(zip(images, widths)):
        resized = cv2.resize(image, (width, 48)).astype(np.float32).transpose(2, 0, 1) / 255
        batch[index, :, :, :width] = (resized - 0.5) / 0.5
    return torch.from_numpy(batch)


@needs_rapidocr
class TestConversion:
    @pytest.fixture(scope="class")
    def converted(self):
        from lpllm.training.ppocr_conversion import convert, rapidocr_recognizer_path

        onnx_path = rapidocr_recognizer_path()
        recognizer, characters = convert(onnx_path)
        return onnx_path, recognizer, characters

    @pytest.mark.skipif(not REALTRAIN.is_dir(), reason="shared/realtrain is not beside the checkout")
    def test_logits_equal_onnxruntimes_on_real_crops(self, converted):
        import onnx
        import onnxruntime

        onnx_path, recognizer, _ = converted
        # The export ends in a softmax; its input, the logits, is made an output too.
        model = onnx.load(str(onnx_path))
        softmax = next(node for node in model.graph.node if node.output[0] == model.graph.output[0].name)
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(softmax.input[0]))
        session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        pixels = rapidocr_batch([image for image, _ in real_crops(4)])
        probabilities, logits = session.run(None, {"x": pixels.numpy()})
        with torch.no_grad():
            ours = recognizer(pixels)
        np.testing.assert_allclose(ours.numpy(), logits, atol=1e-4, rtol=0)
        np.testing.assert_allclose(ours.softmax(-1).numpy(), probabilities, atol=1e-4, rtol=0)

    @pytest.mark.skipif(not REALTRAIN.is_dir(), reason="shared/realtrain is not beside the checkout")
    def test_greedy_decoding_reads_what_rapidocr_reads(self, converted):
        from rapidocr import RapidOCR

        _, recognizer, characters = converted
        engine = RapidOCR(params={"Global.log_level": "error"})
        crops = real_crops(6)
        expected = [engine(image, use_det=False, use_cls=False).txts[0] for image, _ in crops]
        with torch.no_grad():
            ours = [ctc_greedy_decode(recognizer(rapidocr_batch([image])), characters)[0] for image, _ in crops]
        assert ours == expected
        # And it reads plates: the labels are written without the dash of Taiwanese plates.
        assert sum(re.sub("[^0-9A-Z]", "", text) == label for text, (_, label) in zip(ours, crops)) >= 4

    def test_the_command_writes_weights_and_dictionary_and_keeps_an_existing_file(self, converted, tmp_path):
        from lpllm.cli import main

        _, recognizer, characters = converted
        output = tmp_path / "ppocr.safetensors"
        assert main(["convert-ppocr", "--output_path", str(output)]) == 0
        state = load_file(output)
        assert state.keys() == recognizer.state_dict().keys()
        assert all(torch.equal(state[name], tensor) for name, tensor in recognizer.state_dict().items())
        with safe_open(output, "pt") as handle:
            assert handle.metadata()["characters"].split("\n") == characters
        assert len(characters) == 18708
        before = output.stat().st_mtime_ns
        with pytest.raises(ValueError, match="exists; pass --overwrite true"):
            main(["convert-ppocr", "--output_path", str(output)])
        assert output.stat().st_mtime_ns == before

    def test_a_file_that_is_not_a_ppocr_recognizer_is_refused_naming_it(self, tmp_path):
        from lpllm.training.ppocr_conversion import convert

        bogus = tmp_path / "bogus.onnx"
        bogus.write_bytes(b"not an onnx model")
        with pytest.raises(ValueError, match="bogus.onnx"):
            convert(bogus)
