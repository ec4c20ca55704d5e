"""Pipeline definition, configuration and runners."""

import trainer  # noqa: F401  (sets the CPU kernel options before anything imports TensorFlow)
