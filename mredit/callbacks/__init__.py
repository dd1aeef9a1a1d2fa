"""Lightning callbacks of mredit (each YAML-configurable under ``trainer.callbacks``)."""
