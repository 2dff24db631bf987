"""Tokenizer, from-scratch pretraining, feedback finetuning and the evaluation gate."""
