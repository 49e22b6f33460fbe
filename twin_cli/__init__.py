"""The `twin` command: composes each package's verbs, importing a package only when its verb runs."""
