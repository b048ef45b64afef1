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
from trainables.models import pairs  # noqa: F401,E402  (registers the seed-000 pairs)
from trainables.models import mnist_modes  # noqa: F401,E402  (registers "mnist_mode")
from trainables.models import finetune  # noqa: F401,E402  (registers "finetune")
