"""Fine-tuning a new region: characters the tokenizer lacks (Cyrillic, Arabic letters, Eastern Arabic digits,
Hangul) become tokens, the embeddings and the head grow with the old rows unchanged, the saved processor spells and
decodes them in a fresh process, and a training run from a saved model on such labels runs and saves them."""

import csv
import json
import os
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset, load_from_disk
from peft import get_peft_model
from safetensors.torch import load_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from dataset_scripts.crops import build_crops
from dataset_scripts.pipeline import BuildOptions
from lpllm.training import sft as train_sft
from lpllm.training.arguments import ABLATIONS
from lpllm.training.model_setup import lora_config, set_trainable_parameters
from lpllm.training.vocabulary import (
    conversation_characters,
    embedding_modules,
    evaluation_charset,
    grow_vocabulary,
)
from modeling_lpllm import DEFAULT_PLATE_CHARSET, LPLLMProcessor, add_plate_characters, plate_messages
from modeling_lpllm.processing_lpllm import CHAT_TEMPLATE
from modeling_lpllm.tokenization_lpllm import SPECIAL_TOKENS, missing_characters
from tiny_lpllm import random_plate_image, run_without_the_package, save_tiny_checkpoint, tiny_model, tiny_processor


REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "recipes" / "smoke.yaml")
FINETUNE = str(REPO / "recipes" / "finetune_region.yaml")
CYRILLIC = "АВКМ"
ARABIC = "بجدس"
EASTERN_ARABIC_DIGITS = "٠١٢٣٤٥٦٧٨٩"
NEW_LABELS = ("А123ВС", "ب٣٢١ج", "12가3456")
LORA = SimpleNamespace(lora_r=4, lora_alpha=8, lora_dropout=0.0, lora_target_modules=None)


def rows_writing(*labels) -> Dataset:
    """A split of training rows (prompt, completion) whose answers are `labels`."""
    rows = []
    for label in labels:
        user, answer = plate_messages(answer=label)
        rows.append({"prompt": [user], "completion": [answer]})
    return Dataset.from_list(rows)


def test_characters_the_tokenizer_lacks_become_one_token_each_after_the_old_vocabulary():
    tokenizer = tiny_processor().tokenizer
    vocabulary = dict(tokenizer.get_vocab())
    text = "".join(NEW_LABELS) + "AB 12.\t"
    assert missing_characters(tokenizer, text) == list("АВСب٣٢١ج가")  # whitespace and ASCII are never missing

    added = add_plate_characters(tokenizer, text)

    assert added == list("АВСب٣٢١ج가")
    assert tokenizer.convert_tokens_to_ids(added) == list(range(len(vocabulary), len(vocabulary) + len(added)))
    assert all(tokenizer.get_vocab()[token] == index for token, index in vocabulary.items()), "old ids moved"
    for label in (*NEW_LABELS, "AB12"):
        ids = tokenizer(label, add_special_tokens=False).input_ids
        assert len(ids) == len(label) and tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == label  # as the readers decode
    assert add_plate_characters(tokenizer, text) == []  # nothing left to add


@pytest.mark.parametrize("tied", [False, True])
def test_growing_keeps_the_old_rows_and_adds_typical_rows_to_the_embeddings_and_the_head(tied):
    processor = tiny_processor()
    model = tiny_model(processor, tie_word_embeddings=tied)
    old_embeddings = model.get_input_embeddings().weight.detach().clone()
    old_head = model.get_output_embeddings().weight.detach().clone()
    num_old = old_embeddings.shape[0]

    characters = conversation_characters(rows_writing(*NEW_LABELS, "AB12"))
    new_ids = grow_vocabulary(model, processor, characters)

    assert new_ids == list(range(num_old, num_old + 9))
    embeddings, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert embeddings.shape[0] == head.shape[0] == len(processor.tokenizer) == num_old + 9
    assert model.config.text_config.vocab_size == num_old + 9
    assert torch.equal(embeddings[:num_old], old_embeddings) and torch.equal(head[:num_old], old_head)
    assert (head is embeddings) == tied
    # Drawn around the old rows' mean, within their spread: neither zero nor outliers.
    new_rows = embeddings[num_old:].detach()
    assert new_rows.abs().sum(dim=1).min() > 0
    assert new_rows.norm(dim=1).max() < 3 * old_embeddings.norm(dim=1).max()


def test_a_tokenizer_that_spells_every_character_grows_nothing():
    processor = byte_level_processor()
    model = tiny_model(processor)
    before = model.get_input_embeddings().weight.detach().clone()
    assert grow_vocabulary(model, processor, "".join(NEW_LABELS)) == []
    assert torch.equal(model.get_input_embeddings().weight, before)
    for label in NEW_LABELS:
        assert processor.tokenizer.decode(processor.tokenizer(label, add_special_tokens=False).input_ids) == label


def test_ablations_that_cannot_train_new_rows_add_nothing_or_refuse():
    processor = tiny_processor()
    model = tiny_model(processor)
    size = len(processor.tokenizer)
    assert grow_vocabulary(model, processor, "Ж", ABLATIONS["A"]) == []  # nothing trains: nothing to add
    assert len(processor.tokenizer) == size
    with pytest.raises(ValueError, match=r"'Ж'.*ablation C trains CMRM alone.*ablation D"):
        grow_vocabulary(model, processor, "Ж", ABLATIONS["C"])
    assert len(processor.tokenizer) == size
    assert grow_vocabulary(model, processor, "ABC", ABLATIONS["C"]) == []  # nothing missing: C is fine


@pytest.mark.parametrize("tied", [False, True])
def test_with_lora_the_grown_embeddings_and_head_train(tied):
    processor = tiny_processor()
    model = tiny_model(processor, tie_word_embeddings=tied)
    new_ids = grow_vocabulary(model, processor, "Жب", ABLATIONS["D"])
    set_trainable_parameters(model, ABLATIONS["D"])
    modules = embedding_modules(model, new_ids)
    assert modules == ["model.language_model.embed_tokens"] + ([] if tied else ["lm_head"])
    peft_model = get_peft_model(model, lora_config(LORA, ABLATIONS["D"], modules, tied))
    embeddings, head = peft_model.get_input_embeddings(), peft_model.get_output_embeddings()
    assert embeddings.weight.requires_grad and head.weight.requires_grad
    assert (head.weight is embeddings.weight) == tied
    assert lora_config(LORA, ABLATIONS["D"], embedding_modules(model, [])).modules_to_save == ["cmrm"]


def test_grown_tokens_read_back_after_save_and_load_in_a_fresh_process(tmp_path):
    processor = tiny_processor()
    model = tiny_model(processor)
    grow_vocabulary(model, processor, "".join(NEW_LABELS))
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    expected = {label: processor.tokenizer(label, add_special_tokens=False).input_ids for label in NEW_LABELS}
    weights = model.get_input_embeddings().weight.detach()

    script = textwrap.dedent(
        """
        import json
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor
        processor = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)
        model = AutoModelForImageTextToText.from_pretrained(sys.argv[1], trust_remote_code=True)
        tokenizer = processor.tokenizer
        ids = {label: tokenizer(label, add_special_tokens=False).input_ids for label in json.loads(sys.argv[2])}
        decoded = {label: tokenizer.decode(ids[label]) for label in ids}
        torch.save(model.get_input_embeddings().weight, sys.argv[3])
        print(json.dumps({"ids": ids, "decoded": decoded, "size": len(tokenizer)}, ensure_ascii=True))
        """
    )
    completed = run_without_the_package(
        script, tmp_path / "model", json.dumps(list(NEW_LABELS)), tmp_path / "weights.pt", work_dir=tmp_path
    )
    loaded = json.loads(completed.stdout.strip().splitlines()[-1])
    assert loaded["ids"] == expected
    assert loaded["decoded"] == {label: label for label in NEW_LABELS}
    assert loaded["size"] == len(processor.tokenizer)
    assert torch.equal(torch.load(tmp_path / "weights.pt"), weights)


def test_training_and_evaluation_charsets_come_from_the_rows():
    rows = rows_writing("А1", "ب٣", "AB")
    assert set(conversation_characters(rows)) >= set("А1ب٣ABRead the license plate.")
    assert evaluation_charset(rows) == DEFAULT_PLATE_CHARSET + "Аب٣"
    assert evaluation_charset(rows_writing("AB12")) == DEFAULT_PLATE_CHARSET


def new_region_crops(directory, num_plates=24):
    """A crops folder (`labels.csv`, region codes not in the region table) of Cyrillic plates and Arabic plates with
    Eastern Arabic digits, each plate twice (the second label in lower case). Every character is on several plates,
    so every split's characters are on training plates too."""
    (directory / "images").mkdir(parents=True)
    with open(directory / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "text", "region"])
        for index in range(num_plates):
            j = index // 2
            if index % 2:
                text = f"{CYRILLIC[j % 4]} {(j * 37) % 1000:03d} {CYRILLIC[(j + 1) % 4]}{CYRILLIC[(j + 2) % 4]}"
                region = "RU"
            else:
                digits = "".join(EASTERN_ARABIC_DIGITS[(j + k) % 10] for k in range(4))
                text = f"{digits} {''.join(ARABIC[(j + k) % 4] for k in range(3))}"
                region = "SA"
            for copy in range(2):
                name = f"images/{index}_{copy}.png"
                random_plate_image(index * 2 + copy).save(directory / name)
                writer.writerow([name, text.lower() if copy else text, region])
    return directory


@pytest.fixture(scope="module")
def new_region_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("new_region")
    crops = new_region_crops(root / "crops")
    build_crops(crops, root / "dataset", options=BuildOptions(progress=False, parquet=False))
    return root / "dataset"


def test_crops_of_a_region_outside_the_table_keep_their_script_and_digits(new_region_dataset):
    dataset = load_from_disk(str(new_region_dataset))
    texts = [text for split in dataset.values() for text in split["text"]]
    assert len(texts) == 48 and len(set(texts)) == 24  # lower-case Cyrillic copies read as the upper-case plate
    assert {region for split in dataset.values() for region in split["region"]} == {"RU", "SA"}
    characters = set("".join(texts))
    assert characters <= set(CYRILLIC + "0123456789" + ARABIC + EASTERN_ARABIC_DIGITS)
    assert set(EASTERN_ARABIC_DIGITS) & characters and set(ARABIC) & characters and set(CYRILLIC) & characters


def test_finetune_recipe_trains_every_parameter_of_the_base_as_it_prepares_crops(tmp_path):
    _, training_args, model_args, plate_args = train_sft.parse_arguments([
        "--config", FINETUNE, "--model_name_or_path", str(REPO / "recipes" / "models" / "lpllm_tiny.json"),
        "--dataset_name", str(tmp_path), "--output_dir", str(tmp_path / "run"),
    ])  # fmt: skip
    assert plate_args.ablation is None  # a full fine-tune
    assert plate_args.max_train_minutes == 20 and plate_args.cosine_over_budget
    assert training_args.learning_rate < 3e-3  # demo_cpu.yaml's, from scratch
    # Crop preparation is the base's, from its saved processor.
    assert plate_args.image_size is None and plate_args.num_views is None
    assert plate_args.deskew_max_degrees is None and plate_args.rectify_plate is None


@pytest.mark.parametrize("ablation", [None, "D"])
def test_fine_tuning_a_saved_model_on_new_scripts_grows_it_and_saves_a_processor_that_spells_them(
    new_region_dataset, tmp_path, ablation
):
    base = tmp_path / "base"
    save_tiny_checkpoint(base, seed=5)
    old = load_file(base / "model.safetensors")["model.language_model.embed_tokens.weight"]
    if ablation is None:  # the fine-tuning recipe, two steps of it, with the final evaluation
        options = ["--config", FINETUNE, "--per_device_train_batch_size", "4", "--eval_strategy", "no"]
    else:
        options = ["--config", SMOKE, "--ablation", ablation, "--lora_r", "4", "--lora_alpha", "8"]
    os.chdir(REPO)  # the smoke recipe names its model config relative to the repository
    destination = train_sft.main([
        *options, "--model_name_or_path", str(base), "--dataset_name", str(new_region_dataset),
        "--output_dir", str(tmp_path / "run"), "--max_steps", "2",
    ])  # fmt: skip

    train = load_from_disk(str(new_region_dataset))["train"]
    new_characters = sorted(set("".join(train["text"])) - set(DEFAULT_PLATE_CHARSET))
    grown = load_file(destination / "model.safetensors")["model.language_model.embed_tokens.weight"]
    assert grown.shape[0] == old.shape[0] + len(new_characters)
    tokenizer = LPLLMProcessor.from_pretrained(destination).tokenizer
    for text in train["text"]:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert tokenizer.unk_token_id not in ids and tokenizer.decode(ids) == text
    if ablation is None:  # the run's own test plates are evaluated, none left out for their script
        results = json.loads((tmp_path / "run" / "final_eval" / "test" / "results.json").read_text(encoding="utf-8"))
        assert results["dataset"]["num_excluded"] == 0 and results["dataset"]["num_evaluated"] > 0


def byte_level_processor() -> LPLLMProcessor:
    """An offline stand-in for Qwen3-VL's tokenizer: byte-level BPE (any character spells as bytes) with Qwen3-VL's
    special tokens, and no unknown token."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=list(SPECIAL_TOKENS[:7]), initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(["Read the license plate.", "user", "assistant", "ABC123", "AB12CD"], trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=SPECIAL_TOKENS[0], eos_token="<|im_end|>", padding_side="left"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:7])})
    image_processor = tiny_processor().image_processor
    return LPLLMProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)


def test_fine_tuning_a_byte_level_checkpoint_on_cyrillic_adds_nothing_and_saves_it(new_region_dataset, tmp_path):
    from test_modeling_lpllm import stock_twin

    processor = byte_level_processor()
    stock_dir = tmp_path / "stock"
    stock_twin(tiny_model(processor, seed=2)).save_pretrained(stock_dir)
    processor.save_pretrained(stock_dir)
    size = len(processor.tokenizer)
    os.chdir(REPO)
    destination = train_sft.main([
        "--config", SMOKE, "--model_name_or_path", str(stock_dir), "--dataset_name", str(new_region_dataset),
        "--output_dir", str(tmp_path / "run"), "--max_steps", "2", "--ablation", "D", "--lora_r", "4",
    ])  # fmt: skip
    tokenizer = LPLLMProcessor.from_pretrained(destination).tokenizer
    assert len(tokenizer) == size
    assert load_file(destination / "model.safetensors")["model.language_model.embed_tokens.weight"].shape[0] == size
    for text in ("А123ВС", "٣٢١ب"):
        assert tokenizer.decode(tokenizer(text, add_special_tokens=False).input_ids) == text
