"""An application module whose `application` is not callable."""

application = {"not": "callable"}
