"""The explorer wing: the static page that runs the model in the browser, and its server. No
imports here."""
