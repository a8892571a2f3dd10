# The worker container for --runner=FlinkRunner and --runner=DataflowRunner: Beam's Python
# SDK harness with racelens and its native tools, installed as scripts/bootstrap.sh installs
# them on a developer's machine (tests/test_portability.py checks that the two agree).
#
#   docker build -t racelens-worker:0.1.0 .
#
# The base image's entry point, Beam's SDK harness, stays: the runner starts it.
FROM apache/beam_python3.11_sdk:2.77.0

# tesseract-ocr brings the tesseract program (pytesseract) and its language data (tesserocr,
# whose wheel bundles the library but not the data). The others are the GL, GLib and X11
# libraries that OpenCV's Qt loads on `import cv2` (rapidocr-onnxruntime requires
# opencv-python, not the headless build). dlib-bin, face-recognition-models and
# rapidocr-onnxruntime come with racelens from setup.py; their models ship in the packages.
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr \
       libgl1 libglib2.0-0 libsm6 libice6 libx11-6 libxext6 libxcb1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/racelens
COPY . .
# Not editable and without the [dev] extra (test tools): a worker only runs the pipeline.
# apache-beam is already there, with the GCP and AWS clients that gs:// and s3:// need.
RUN pip install --no-cache-dir --disable-pip-version-check .
