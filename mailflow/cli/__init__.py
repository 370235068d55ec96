"""The command line (`mailflow ...`): one module per command group, each a thin door that
parses arguments, calls the core and prints. Sits on top: may import every part of mailflow
(serve to run the service); nothing imports it (import contract "core-no-web-cli")."""
