"""Code that tap-amplitude and target-posthog share, in one place (see README.md).

Nothing here imports singer-sdk: the plugins' console entry points import
:mod:`singer_plugin_common.stop_signals` before anything heavy is loaded.
"""
