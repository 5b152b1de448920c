"""One module per daemon: configuration renderers with their templates."""
