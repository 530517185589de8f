"""Actors: the live objects a proactor hosts, and the router that carries messages between them."""

from gwproactor.actors.base import Actor
from gwproactor.actors.router import Router, RouterStats

__all__ = ["Actor", "Router", "RouterStats"]
