"""Camunda 7's typed variables and dates for the web APIs: they live in the engine's one variables
module (engine/variables.py); this module only re-exports them for the REST layers' imports."""

from engine.variables import (
    FORM_FIELD_TYPES,
    SUPPORTED_TYPES,
    UNSUPPORTED_TYPES,
    dmn_type,
    format_date,
    from_typed,
    parse_date,
    to_typed,
    type_of,
    values_to_camunda,
    variables_from_camunda,
    variables_to_camunda,
)

__all__ = ["FORM_FIELD_TYPES", "SUPPORTED_TYPES", "UNSUPPORTED_TYPES", "dmn_type", "format_date", "from_typed",
           "parse_date", "to_typed", "type_of", "values_to_camunda", "variables_from_camunda",
           "variables_to_camunda"]
