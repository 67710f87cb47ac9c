"""Supervised fine-tuning of LP-LLM (Qwen3-VL + CMRM) on plate conversations, with TRL's `SFTTrainer` and PEFT LoRA.

```bash
# The paper's recipe (LoRA r=64/alpha=16 on the language model, CMRM in full, lr 1e-4, cosine, 20 epochs, batch 16,
# 448x448 images), then push the merged model:
python train_sft.py --config recipes/qwen3vl_2b_lora_cmrm.yaml --dataset_name data/ccpd_blur \
    --output_dir runs/lpllm-ccpd --push_to_hub --hub_model_id org/lpllm-ccpd

# The paper's ablations (Table 2): A zero-shot, B LoRA only, C CMRM only, D LoRA + CMRM
python train_sft.py --config recipes/qwen3vl_2b_lora_cmrm.yaml --ablation C --dataset_name data/ccpd_blur \
    --output_dir runs/C

# Several GPUs or machines (configs in recipes/accelerate/: ddp, fsdp, deepspeed_zero2, deepspeed_zero3)
accelerate launch --config_file recipes/accelerate/ddp.yaml train_sft.py --config recipes/qwen3vl_2b_lora_cmrm.yaml ...

# No GPU, no Hub: a small LP-LLM from scratch on the CPU (model config file + offline character-level processor)
python train_sft.py --config recipes/demo_cpu.yaml --dataset_name data/synthetic --output_dir runs/demo

# Seconds, for tests
python train_sft.py --config recipes/smoke.yaml --dataset_name DIR --output_dir OUT
```

Every YAML field can be overridden on the command line. Whatever the run, `OUT/final/` ends up holding the merged
model with its processor, generation config and model card, readable with
`pipeline("image-to-text", model="OUT/final", trust_remote_code=True)`; `OUT/final_eval/` holds eval.py's reports of it
on the test split and the real crops (`python eval.py --compare OUT/final_eval/test ...` reuses them).
"""

from lpllm.training.sft import main


if __name__ == "__main__":
    main()
