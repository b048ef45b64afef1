"""Model zoo. Importing this package registers every model."""
from trainables.models.registry import (  # noqa: F401
    ModelEntry,
    ModelParams,
    Preprocess,
    build_model,
    get_model,
    model_names,
    register_model,
)
from trainables.models import cnn  # noqa: F401,E402  (registers "cnn")
