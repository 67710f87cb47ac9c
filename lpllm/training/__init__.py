"""Training helpers behind train_sft.py: arguments, model set-up, collator, trainer, export."""
