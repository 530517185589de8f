"""The demo: two linked processes exchanging events through an outage (``gwproactor demo``)."""
