"""The box's configuration: schema (one declaration per module), grammar, running/saved config.

    from appliance.config import Config, apply_op, parse_op, split_words
See schema.py for how a module declares itself, store.py for VARS keys and the backup file.
"""

from appliance.config.grammar import GrammarError, Op, Word, parse_op, quote, split_words
from appliance.config.model import (
    Activation,
    Config,
    ConfigError,
    activate,
    apply_op,
    describe_op,
    diff_count,
)
from appliance.config.schema import MODULES, Arg, Module, Sub, declare, ordered_modules
from appliance.config.store import (
    Backup,
    BackupHeader,
    RestoreError,
    commit_changes,
    load_from_vars,
    make_backup,
    parse_backup,
    parse_line,
    saved_objects,
)

__all__ = [
    "MODULES",
    "Activation",
    "Arg",
    "Backup",
    "BackupHeader",
    "Config",
    "ConfigError",
    "GrammarError",
    "Module",
    "Op",
    "RestoreError",
    "Sub",
    "Word",
    "activate",
    "apply_op",
    "describe_op",
    "commit_changes",
    "declare",
    "diff_count",
    "load_from_vars",
    "saved_objects",
    "make_backup",
    "ordered_modules",
    "parse_backup",
    "parse_line",
    "parse_op",
    "quote",
    "split_words",
]
