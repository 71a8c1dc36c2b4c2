curl -X POST https://api.pathbound.ai/v1/contacts \
-H "Authorization: Bearer YOUR_API_KEY" \
-H "Content-Type: application/json" \
-d '{
"email": "ada@example.com",
"properties": {
"firstname": "Ada",
"lastname": "Lovelace",
"company": "Analytical Engines",
"lifecyclestage": "lead"
}
}'
