"""One message out: send workers, sender choice (breakers, pacing), the HTTP request, gateways."""
