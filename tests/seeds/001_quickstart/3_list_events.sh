curl "https://api.pathbound.ai/v1/events?limit=5&sort_dir=desc" \
-H "Authorization: Bearer YOUR_API_KEY"
