"""``mredit serve``: an interactive editor in the browser (gradio), over the editing service of ``mredit.editing``.

``mredit.serve.app`` builds the page and is the only module that imports gradio (imported by ``mredit serve``
when it runs, never by ``mredit --help`` or the other commands); ``mredit.serve.examples`` collects the
examples gallery (the demo's clean test set, a folder of images or shards).
"""
