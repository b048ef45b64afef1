"""Pure PyTorch: layers, models, datasets, the training loop. No ray, mlflow or matplotlib."""
