"""Training entry points: the LightningCLI behind ``mredit fit|validate|test|predict``."""
