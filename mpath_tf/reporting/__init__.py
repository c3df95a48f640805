"""What a finished search shows: plots, the HTML report and the deployable
bundle with its selector."""
