"""Keep pytest out: these modules import Nova and run as a unittest suite from run.sh."""

collect_ignore_glob = ["*"]
