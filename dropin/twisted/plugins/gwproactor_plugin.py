"""Twisted plugin: ``twist gwproactor --app package.module:name`` runs a gwproactor application."""

from gwproactor.twist import GwproactorServiceMaker

gwproactor = GwproactorServiceMaker()
