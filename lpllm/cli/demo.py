"""`lpllm demo`: a page to try an LP-LLM model in the browser (Gradio), served from this machine.

    pip install "lpllm[demo]"
    lpllm demo --model runs/demo/lpllm/final                  # http://127.0.0.1:7860
    lpllm demo --model runs/base/final --port 8080            # another port
    lpllm demo --model runs/base/final --host 0.0.0.0         # reachable from other machines: only on a trusted network

Upload a plate crop and press Read: the page shows the reading, its score, a confidence bar per character, the
candidates and, for a model with CMRM, where each character slot looked (one heat map per slot and their mean, drawn
over the crop: `lpllm.evaluation.attention_maps`). The controls are the pipeline's arguments of the same names:
`top_k`, `region` (auto, a region code of the model's plate patterns, none), `constrain` and `min_score` (0: keep
every reading). The reading is the checkpoint's own `pipeline("image-to-text")`, so it equals what the pipeline reads.

The page is bound to 127.0.0.1 unless `--host` says otherwise, sends no analytics, opens no share link and calls
nothing outside this machine; the model is loaded as `lpllm read` loads it (a Hub id is downloaded then, a model that
ships code other than this project's needs `--trust_remote_code`). `build_demo` builds the page without serving it.
"""

import html
import importlib.util
import io
import logging
import os
import sys
from dataclasses import dataclass, field

from PIL import Image
from transformers import pipeline
from trl import TrlParser

from modeling_lpllm.plate_reading import region_pattern_table

from ..evaluation.attention_maps import attention_figure, check_slot_attention, figure_png, slot_attention
from ..evaluation.model_sources import check_model_reference, remote_code_allowed


INSTALL_HINT = "pip install 'lpllm[demo]'"
CANDIDATE_COLUMNS = ["rank", "text", "score", "regions"]
MAX_TOP_K = 10
# Confidence bar colours: at least the first bound green, at least the second amber, red below.
CONFIDENCE_COLOURS = ((0.9, "#2e9e44"), (0.5, "#e0a100"), (0.0, "#d0342c"))

logger = logging.getLogger("demo")


@dataclass
class DemoArguments:
    """Arguments of `lpllm demo`: the model, and where the page is served."""

    model: str = field(metadata={"help": "An LP-LLM checkpoint dir (or Hub id) with its processor."})
    host: str = field(
        default="127.0.0.1",
        metadata={"help": "Address to serve the page on; 127.0.0.1 keeps it to this machine, 0.0.0.0 opens it to "
        "the network."},
    )
    port: int = field(default=7860, metadata={"help": "Port to serve the page on."})
    device: str | None = field(
        default=None, metadata={"help": "torch device of the model (None: the pipeline's choice, the CPU without GPU)."}
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Run the Python code a model ships with (its config's auto_map), e.g. a Hub LP-LLM. An "
        "LP-LLM folder this project wrote loads without it."},
    )
    log_level: str = field(default="WARNING", metadata={"help": "Logging level (DEBUG, INFO, WARNING, ...)."})

    def __post_init__(self):
        if not isinstance(self.host, str) or not self.host.strip():
            raise ValueError(f"`host` must be an address such as 127.0.0.1; got {self.host!r}.")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise ValueError(f"`port` must be a whole number in [1, 65535]; got {self.port!r}.")
        if not isinstance(logging.getLevelName(str(self.log_level).upper()), int):
            raise ValueError(f"`log_level` must be a logging level such as INFO or WARNING, got {self.log_level!r}.")
        check_model_reference(self.model, "model")


def import_gradio():
    """gradio, with its analytics off (the variable is read when gradio loads and when an app starts).

    Raises:
        ImportError: when gradio is not installed, saying how to install it.
    """
    if importlib.util.find_spec("gradio") is None:
        raise ImportError(f"`lpllm demo` needs gradio (not installed): {INSTALL_HINT}.")
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    import gradio

    return gradio


def load_reader(model: str, device: str | None = None, trust_remote_code: bool = False):
    """The checkpoint's `pipeline("image-to-text")` (`modeling_lpllm.PlateRecognitionPipeline`).

    Raises:
        FileNotFoundError, ValueError: as `check_model_reference` and `remote_code_allowed`.
    """
    check_model_reference(model, "model")
    trust_remote_code = remote_code_allowed(model, trust_remote_code)
    return pipeline("image-to-text", model=model, device=device, trust_remote_code=trust_remote_code)


def confidence_bars(text: str, char_scores: list[float] | None) -> str:
    """HTML: one bar per character of `text`, as tall as its probability, the character and the value below."""
    if not text:
        return ""
    bars = []
    for char, probability in zip(text, char_scores or [None] * len(text)):
        height = 0.0 if probability is None else 100.0 * probability
        colour = "#999" if probability is None else next(c for bound, c in CONFIDENCE_COLOURS if probability >= bound)
        value = "" if probability is None else f"{probability:.2f}"
        bars.append(
            '<div style="display:flex;flex-direction:column;align-items:center;width:2.2em">'
            '<div style="height:64px;width:1.2em;background:#e6e6e6;display:flex;align-items:flex-end">'
            f'<div style="height:{height:.1f}%;width:100%;background:{colour}"></div></div>'
            f'<div style="font-size:1.3em;font-family:monospace">{html.escape(char)}</div>'
            f'<div style="font-size:0.75em">{value}</div></div>'
        )
    return f'<div class="lpllm-bars" style="display:flex;gap:2px;align-items:flex-end">{"".join(bars)}</div>'


def candidate_rows(result: dict) -> list[list]:
    """The candidates table: `CANDIDATE_COLUMNS` per candidate, best first (the reading alone without `top_k`)."""
    candidates = result.get("candidates") or [{**result, "text": result.get("rejected_text", result["generated_text"])}]
    return [
        [rank, candidate["text"], float(f"{candidate['score']:.4g}"), " ".join(candidate.get("regions") or [])]
        for rank, candidate in enumerate(candidates, start=1)
    ]


def attention_image(reader, image: Image.Image, title: str) -> Image.Image:
    """The crop's slot attention maps (`attention_maps.attention_figure`, two panels a row) as an image."""
    maps = slot_attention(reader.model, reader.processor, [image])
    return Image.open(io.BytesIO(figure_png(attention_figure(maps, [title], columns=2))))


def build_demo(model_path: str, device: str | None = None, trust_remote_code: bool = False, reader=None):
    """The page (a `gradio.Blocks`, not yet served: `launch_demo`) reading plates with the model at `model_path`.

    Args:
        reader: the model's `pipeline("image-to-text")` when already loaded; None loads it (`load_reader`).

    Raises:
        ImportError: without gradio.
        FileNotFoundError, ValueError: for a model that cannot be loaded (`load_reader`).
    """
    gr = import_gradio()
    reader = reader or load_reader(model_path, device, trust_remote_code)
    regions = ["auto", *region_pattern_table(reader.processor), "none"]
    try:
        check_slot_attention(reader.model)
        no_attention = None
    except ValueError as error:
        no_attention = str(error)

    def read(image, top_k, region, constrain, min_score, frames=None):
        if image is None:
            raise gr.Error("Upload a plate crop first.")
        # More frames of the same plate make the crop the first frame of a track, read as one plate (late fusion).
        plate = [image, *frames] if frames else image
        options = {"top_k": int(top_k), "region": None if region == "none" else region, "constrain": bool(constrain)}
        if min_score:
            options["min_score"] = float(min_score)
        try:
            result = reader([plate], **options)[0][0]
        except ValueError as error:
            raise gr.Error(str(error)) from error
        bars = confidence_bars(result["generated_text"], result.get("char_scores"))
        if result.get("unreadable"):
            bars = (
                f"<p>Unreadable: score {result['score']:.3f} is below min_score {float(min_score):.2f}; the model read "
                f"<b>{html.escape(result['rejected_text'])}</b>.</p>"
                + confidence_bars(result["rejected_text"], result.get("char_scores"))
            )
        attention = None
        if no_attention is None:
            attention = attention_image(reader, image, result.get("rejected_text") or result["generated_text"])
        return result["generated_text"], result["score"], bars, candidate_rows(result), attention

    name = os.path.basename(os.path.normpath(model_path))
    with gr.Blocks(title=f"LP-LLM: {name}", analytics_enabled=False) as demo:
        gr.Markdown(f"## LP-LLM plate reader\nModel: `{html.escape(model_path)}`. Upload a plate crop (and any more frames of it) and press Read.")
        with gr.Row():
            with gr.Column():
                image = gr.Image(
                    type="pil", image_mode="RGB", sources=["upload", "clipboard"], label="Plate crop", elem_id="crop"
                )
                frames = gr.File(
                    file_count="multiple", file_types=["image"], type="filepath",
                    label="More frames of the same plate (optional: read as one track)",
                )  # fmt: skip
                top_k = gr.Slider(1, MAX_TOP_K, value=1, step=1, label="top_k (candidates; beam search above 1)")
                region = gr.Dropdown(regions, value="auto", label="region (candidates fitting its patterns first)")
                constrain = gr.Checkbox(False, label="constrain (write only texts fitting the region's patterns)")
                min_score = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="min_score (abstain below; 0: never)")
                button = gr.Button("Read", variant="primary")
            with gr.Column():
                reading = gr.Textbox(label="Reading", elem_id="reading", interactive=False)
                score = gr.Number(label="Score (probability the whole plate is right)", interactive=False)
                bars = gr.HTML(label="Per-character confidence")
                candidates = gr.Dataframe(headers=CANDIDATE_COLUMNS, label="Candidates", interactive=False)
        attention = gr.Image(
            type="pil", format="png", label="CMRM slot attention", elem_id="attention", interactive=False
        )
        if no_attention is not None:
            gr.Markdown(f"No slot attention maps: {no_attention}")
        button.click(
            read, inputs=[image, top_k, region, constrain, min_score, frames],
            outputs=[reading, score, bars, candidates, attention], api_name="read",
        )  # fmt: skip
    return demo


def launch_demo(demo, host: str = "127.0.0.1", port: int = 7860, block: bool = True):
    """Serves `demo` on `host:port`: no share link, no analytics, no server-side rendering (which needs Node).
    `block` False returns once it is served (`demo.close()` stops it). Returns gradio's `(app, local_url,
    share_url)`."""
    return demo.launch(
        server_name=host, server_port=port, share=False, prevent_thread_lock=not block, ssr_mode=False,
        mcp_server=False, inbrowser=False, quiet=not block,
    )  # fmt: skip


def parse_arguments(argv: list[str] | None = None) -> DemoArguments:
    description = __doc__.split("\n\n")[0] + " Options also come from a YAML file: --config FILE.yaml."
    (args,) = TrlParser(DemoArguments, description=description).parse_args_and_config(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    """Runs the command line: serves the page until interrupted; returns the exit status."""
    args = parse_arguments(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    demo = build_demo(args.model, args.device, args.trust_remote_code)
    launch_demo(demo, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
