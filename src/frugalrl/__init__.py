"""frugalrl: sample-efficient reinforcement-learning fine-tuning of language models on verifiable tasks."""

__version__ = "0.1.0"
