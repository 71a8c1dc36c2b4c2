curl -X POST https://api.pathbound.ai/v1/actions \
-H "Authorization: Bearer YOUR_API_KEY" \
-H "Content-Type: application/json" \
-d '{
"type": "email_message",
"params": {
"contact_id": "ct_abc",
"subject": "Following up",
"message": "Hi Ada — saw you were back on the pricing page yesterday. Worth a quick call?"
},
"identity_id": "id_123",
"require_approval": true
}'
