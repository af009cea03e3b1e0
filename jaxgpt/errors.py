"""The errors jaxgpt raises on purpose, each with a one-line message a user can act on."""


class ConfigError(ValueError):
  """A bad config key or value: the message names `key=value` and what is allowed. The entry
  points print it as one line `error: ...` and exit 2."""


class ConfigFileError(ConfigError):
  """A config file that cannot be loaded: missing, a directory, or without `get_config`. The
  message names the path as given."""


class StatsError(ValueError):
  """Statistics that cannot be computed from what was given (one seed in an arm, a non-finite
  value, paired arms without the same seeds): the message names the arm. The entry points
  print it as one line `error: ...` and exit 2."""
