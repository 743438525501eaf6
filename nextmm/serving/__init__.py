"""Serving: one process, one loaded model, a web page people chat with and an HTTP API programs call.

    limits.py      what a request may ask for (sizes, counts, time), from the config's ``limits``
    uploads.py     uploaded bytes or files -> model input (Media), with readable errors
    worker.py      the one thread that owns the model: turns run one at a time, in the order asked
    files.py       each served turn's files under the output folder, and the only files served
    openai_chat.py an OpenAI chat-completions request -> messages and settings; a Turn -> the response
    api.py         the HTTP API (FastAPI): /v1/chat/completions, /v1/models, /health, /outputs/...
    page.py        the web page (Gradio), mounted at / of the same server
    app.py         the parts put together: build_app(build, ...) -> the FastAPI app

``nextmm serve`` (nextmm/cli/serve.py) loads the model and runs the app with uvicorn.
"""
