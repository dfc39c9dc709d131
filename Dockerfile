FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md worker.py ./
COPY ce4big ./ce4big
COPY api ./api
COPY cli ./cli
COPY activities ./activities
COPY emails ./emails
COPY workflows ./workflows
COPY migrations ./migrations
RUN pip install --no-cache-dir . && useradd --system --uid 10001 ce4big
USER ce4big
EXPOSE 8000
CMD ["ce4big", "api"]
